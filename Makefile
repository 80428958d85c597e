# The two commands of the README: deploy the dev stack, run the tests.
.PHONY: up test render preview rehearse

up:  ## deploy the dev stack on this Docker host (local file backend), then check every service
	bash scripts/deploy.sh

test:  ## install what the tests need and run them
	bash scripts/test.sh

render:  ## write the rendered config files of a stack: make render STACK=prod
	venv/bin/python -m config.render --stack $(or $(STACK),dev) --out out/$(or $(STACK),dev)

preview:  ## pulumi preview with the policy pack: make preview STACK=staging
	PULUMI_BACKEND_URL=file://$(CURDIR)/.pulumi-state pulumi preview --stack $(or $(STACK),dev) --policy-pack policy

rehearse:  ## without Docker: build the images with podman, run the dev stack's containers as declared, validate them
	@bash scripts/rehearse.sh
