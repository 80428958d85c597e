"""The translation of pulumi-docker inputs to podman settings, one input at a time, without an engine."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from config.settings import STACKS
from rehearsal.health import HEALTHY, STARTING, UNHEALTHY, HealthMonitor, Probe
from rehearsal.program import declare, docker_reference, image_plan
from rehearsal.run import mismatches
from rehearsal.translate import (
    InputTypeError, RefusedByDocker, TranslationError, UnknownInput, go_duration, network_args,
    translate_container, upload_tar, volume_args,
)

IMAGE = "docker.io/observability/ops:0123456789ab"
HEALTH = {"tests": ["CMD", "python", "-c", "print(1)"], "interval": "10s", "timeout": "5s",
          "startPeriod": "20s", "retries": 6.0}


def run_of(**inputs):
    return translate_container("svc", {"name": "dev-svc", "image": "observability/ops:0123456789ab", **inputs}, IMAGE)


def pairs(args: list[str]) -> list[tuple[str, str]]:
    """(flag, value) pairs of the create options (every option the translator emits takes a value)."""
    out, i = [], 0
    while i < len(args):
        if args[i] in ("--read-only", "--no-healthcheck"):
            out.append((args[i], ""))
            i += 1
        else:
            out.append((args[i], args[i + 1]))
            i += 2
    return out


# --- each input to its podman setting ---------------------------------------------------------


def test_name_command_and_image_make_the_create_command():
    r = run_of(command=["python", "-m", "webhook_receiver"])
    assert r.create_argv() == ["create", "--pull=never", "--name", "dev-svc", IMAGE, "python", "-m", "webhook_receiver"]


def test_entrypoints_become_a_json_entrypoint():
    assert pairs(run_of(entrypoints=["/bin/prometheus", "--x"]).args) == [("--entrypoint", '["/bin/prometheus", "--x"]')]


def test_envs_are_passed_one_by_one_as_declared():
    assert pairs(run_of(envs=["A=1", "B=x=y"]).args) == [("--env", "A=1"), ("--env", "B=x=y")]


def test_an_env_without_a_value_stops_rather_than_copy_the_host_environment():
    with pytest.raises(InputTypeError, match=r"envs\[0\]"):
        run_of(envs=["HOME"])


def test_user_memory_and_restart():
    r = run_of(user="0:0", memory=128.0, restart="unless-stopped")
    assert pairs(r.args) == [("--memory", "128m"), ("--restart", "unless-stopped"), ("--user", "0:0")]
    assert r.expect["HostConfig.Memory"] == 128 * 1024 * 1024


def test_capabilities_drop_all_and_add_what_is_named():
    r = run_of(capabilities={"drops": ["ALL"], "adds": ["NET_BIND_SERVICE"]})
    assert pairs(r.args) == [("--cap-drop", "ALL"), ("--cap-add", "NET_BIND_SERVICE")]


def test_no_new_privileges_is_the_only_security_option_known():
    assert pairs(run_of(securityOpts=["no-new-privileges:true"]).args) == [("--security-opt", "no-new-privileges")]
    with pytest.raises(UnknownInput, match="securityOpts"):
        run_of(securityOpts=["seccomp=unconfined"])


def test_read_only_root_gets_no_tmpfs_podman_would_add():
    r = run_of(readOnly=True)
    assert r.args == ["--read-only", "--read-only-tmpfs=false"] and r.read_only


def test_tmpfs_keeps_its_options_and_starts_empty_as_with_docker():
    r = run_of(tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"})
    assert pairs(r.args) == [("--tmpfs", "/tmp:rw,noexec,nosuid,size=16m,notmpcopyup")]


def test_log_driver_and_size_carry_and_max_file_is_said_not_carried():
    r = run_of(logDriver="json-file", logOpts={"max-size": "10m", "max-file": "3"})
    assert pairs(r.args) == [("--log-driver", "json-file"), ("--log-opt", "max-size=10m")]
    assert any("max-file" in note for note in r.notes)


def test_labels_are_set_as_key_value():
    r = run_of(labels=[{"label": "service", "value": "svc"}, {"label": "stack", "value": "dev"}])
    assert pairs(r.args) == [("--label", "service=svc"), ("--label", "stack=dev")]


def test_the_network_is_joined_with_its_aliases():
    r = run_of(networksAdvanced=[{"name": "dev-observability", "aliases": ["svc", "svc2"]}])
    assert pairs(r.args) == [("--network", "dev-observability:alias=svc,alias=svc2")]


def test_ports_bind_to_the_declared_address():
    r = run_of(ports=[{"ip": "127.0.0.1", "internal": 9093.0, "external": 19093.0}])
    assert pairs(r.args) == [("--publish", "127.0.0.1:19093:9093/tcp")]


def test_volumes_named_host_and_read_only():
    r = run_of(volumes=[{"containerPath": "/data", "volumeName": "dev_mime_storage", "readOnly": True},
                        {"containerPath": "/var/run/docker.sock", "hostPath": "/var/run/docker.sock"}])
    assert pairs(r.args) == [("--volume", "dev_mime_storage:/data:ro"),
                             ("--volume", "/var/run/docker.sock:/var/run/docker.sock")]


def test_exec_form_healthcheck_keeps_its_words_and_timings():
    r = run_of(healthcheck=HEALTH, wait=True, waitTimeout=120.0)
    assert pairs(r.args) == [("--health-cmd", '["python", "-c", "print(1)"]'), ("--health-interval", "10s"),
                             ("--health-timeout", "5s"), ("--health-start-period", "20s"), ("--health-retries", "6")]
    h = r.healthcheck
    assert (h.interval, h.timeout, h.start_period, h.retries, h.start_interval) == (10, 5, 20, 6, 5)
    assert r.wait and r.wait_timeout == 120
    assert r.expect["Config.Healthcheck.Test"] == HEALTH["tests"]


def test_healthcheck_timings_left_out_take_dockers_defaults():
    h = run_of(healthcheck={"tests": ["CMD-SHELL", "true"]}).healthcheck
    assert (h.interval, h.timeout, h.start_period, h.retries) == (30, 30, 0, 3)


def test_a_one_word_exec_healthcheck_cannot_be_kept_and_says_so():
    with pytest.raises(TranslationError, match="healthcheck.tests"):
        run_of(healthcheck={"tests": ["CMD", "true"]})


def test_wait_without_a_healthcheck_is_refused_as_the_provider_does():
    with pytest.raises(RefusedByDocker, match="does not have a healthcheck"):
        run_of(wait=True)


def test_uploads_carry_path_mode_and_owner():
    r = run_of(uploads=[{"file": "/etc/app/a.yml", "content": "a: 1\n"},
                        {"file": "/run/secrets/k", "content": "s", "permissions": "0440", "owner": "10001",
                         "group": "10001"}])
    assert [(u.path, u.mode, u.uid, u.gid, u.content) for u in r.uploads] == [
        ("/etc/app/a.yml", 0o644, 0, 0, b"a: 1\n"), ("/run/secrets/k", 0o440, 10001, 10001, b"s")]
    with tarfile.open(fileobj=io.BytesIO(upload_tar(r.uploads[1]))) as tar:
        (member,) = tar.getmembers()  # parents are implied, created by the engine as Docker does
        assert (member.name, member.mode, member.uid, member.gid) == ("run/secrets/k", 0o440, 10001, 10001)


def test_an_upload_owner_that_is_a_number_stops_with_its_path():
    with pytest.raises(InputTypeError, match=r"uploads\[0\]\.owner"):
        run_of(uploads=[{"file": "/run/secrets/k", "content": "s", "owner": 10001.0}])


def test_uploads_into_a_read_only_root_are_refused_as_docker_refuses_them():
    with pytest.raises(RefusedByDocker, match="container rootfs is marked read-only"):
        run_of(readOnly=True, uploads=[{"file": "/run/secrets/k", "content": "s"}])


# --- nothing silently dropped -------------------------------------------------------------------


@pytest.mark.parametrize("key, value", [("privileged", True), ("dns", ["1.1.1.1"]), ("ulimits", [{"name": "nofile"}]),
                                        ("networkMode", "host"), ("gpus", "all")])
def test_an_input_without_a_translation_stops_with_its_name(key, value):
    with pytest.raises(UnknownInput, match=repr(key)):
        run_of(**{key: value})


def test_an_unknown_field_inside_an_input_stops_with_its_path():
    with pytest.raises(UnknownInput, match=r"ports\[0\]\.hostname"):
        run_of(ports=[{"internal": 80.0, "hostname": "x"}])


def test_networks_and_volumes_translate_and_stop_on_the_unknown():
    assert network_args("network", {"name": "dev-observability", "driver": "bridge",
                                    "labels": [{"label": "stack", "value": "dev"}]}) == [
        "network", "create", "--driver", "bridge", "--label", "stack=dev", "dev-observability"]
    assert volume_args("v", {"name": "dev_x", "labels": [{"label": "data", "value": "true"}]}) == [
        "volume", "create", "--label", "data=true", "dev_x"]
    with pytest.raises(UnknownInput, match="ipamConfigs"):
        network_args("network", {"name": "n", "ipamConfigs": [{"subnet": "10.0.0.0/24"}]})
    with pytest.raises(UnknownInput, match="driverOpts"):
        volume_args("v", {"name": "v", "driverOpts": {"type": "nfs"}})


def test_go_durations():
    assert go_duration("r", "k", "1m30s") == 90 and go_duration("r", "k", "500ms") == 0.5
    with pytest.raises(InputTypeError, match="'k'"):
        go_duration("r", "k", "10 seconds")


# --- the program's own declarations ------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_container_the_program_declares_translates(stack):
    declared = declare(stack)
    for name in declared.order:
        run = translate_container(name, declared.containers[name].inputs, declared.image_of(name))
        assert run.name == f"{stack}-{name}"


def test_the_image_plan_has_one_python_base_for_both_built_images():
    plan = image_plan(declare("dev"))
    bases = [line for line in plan if line.startswith("python-base ")]
    assert len(bases) == 1 and bases[0].split()[2:] == ["bookworm", "3.11"]
    assert sum(line.startswith("build ") for line in plan) == 2
    assert {line.split()[1] for line in plan if line.startswith("stand-in ")} == {
        "docker.io/prom/prometheus:v3.16.0", "docker.io/prom/alertmanager:v0.34.0",
        docker_reference(declare("dev").remote[declare("dev").containers["jaeger"].inputs["image"]])}


def test_docker_reference_names_as_docker_does():
    assert docker_reference("python:3.11.14-slim-bookworm") == "docker.io/library/python:3.11.14-slim-bookworm"
    assert docker_reference("prom/prometheus:v3.16.0") == "docker.io/prom/prometheus:v3.16.0"
    assert docker_reference("cr.jaegertracing.io/jaegertracing/jaeger:2.12.0") == \
        "cr.jaegertracing.io/jaegertracing/jaeger:2.12.0"


# --- what ran against what was declared ----------------------------------------------------------


def inspect_of(run):
    """A `podman inspect` document holding exactly what `run` declares."""
    ports = {f"{p['internal']}/{p['protocol']}": [{"HostIp": p["ip"], "HostPort": str(p["external"])}]
             for p in run.expect.get("ports", [])}
    return {
        "Name": run.name,
        "Config": {"Cmd": run.command, "Env": ["PATH=/usr/bin", *run.expect.get("Config.Env ⊇", [])],
                   "Labels": run.expect.get("Config.Labels ⊇", {}),
                   "Healthcheck": {"Test": run.expect.get("Config.Healthcheck.Test")}},
        "HostConfig": {"Memory": run.expect.get("HostConfig.Memory"), "SecurityOpt": ["no-new-privileges"],
                       "ReadonlyRootfs": run.read_only, "Tmpfs": {p: "" for p in run.expect.get("HostConfig.Tmpfs", [])},
                       "RestartPolicy": {"Name": run.expect.get("HostConfig.RestartPolicy.Name")},
                       "LogConfig": {"Type": "json-file"}, "PortBindings": ports},
        "EffectiveCaps": [],
        "NetworkSettings": {"Networks": {n: {"Aliases": [*a, "0123abcd"]} for n, a in run.expect["networks"].items()}},
        "Mounts": [{"Name": s, "Destination": d, "RW": not ro} for s, d, ro in run.expect.get("mounts", [])],
    }


def test_a_container_that_holds_every_declared_setting_shows_no_mismatch():
    declared = declare("dev")
    for name in ("mime-server", "prometheus", "backup"):
        run = translate_container(name, declared.containers[name].inputs, declared.image_of(name))
        assert mismatches(run, inspect_of(run)) == [], name


def test_a_setting_the_container_lacks_is_named():
    declared = declare("dev")
    run = translate_container("backup", declared.containers["backup"].inputs, declared.image_of("backup"))
    info = inspect_of(run)
    info["HostConfig"]["ReadonlyRootfs"] = False
    info["NetworkSettings"]["Networks"]["dev-observability"]["Aliases"] = []
    info["EffectiveCaps"] = ["CAP_CHOWN"]
    found = mismatches(run, info)
    assert any("ReadonlyRootfs" in m for m in found)
    assert any("aliases ['backup'] missing" in m for m in found)
    assert any("effective capabilities" in m for m in found)


# --- Docker's healthcheck state machine ---------------------------------------------------------


def monitor(retries=2, start_period=20.0):
    from rehearsal.translate import Healthcheck

    m = HealthMonitor(engine=None, container="c", check=Healthcheck(["CMD", "a", "b"], interval=10, timeout=5,
                                                                    start_period=start_period, retries=retries))
    m.started_at = 1000.0
    return m


def test_failures_inside_the_start_period_do_not_count_until_the_first_success():
    m = monitor()
    for at in (1005.0, 1010.0, 1015.0):
        m._record(Probe(at, 1, "refused", 0.1))
    assert (m.status, m.failing_streak) == (STARTING, 0)
    m._record(Probe(1025.0, 1, "refused", 0.1))
    m._record(Probe(1035.0, 1, "refused", 0.1))
    assert (m.status, m.failing_streak) == (UNHEALTHY, 2)


def test_a_success_makes_it_healthy_and_resets_the_streak():
    m = monitor(retries=3)
    m._record(Probe(1005.0, 0, "", 0.1))
    assert m.status == HEALTHY
    m._record(Probe(1015.0, 1, "", 0.1))
    m._record(Probe(1025.0, -1, "timeout", 5.0))
    assert (m.status, m.failing_streak) == (HEALTHY, 2)
    m._record(Probe(1035.0, 0, "", 0.1))
    assert (m.status, m.failing_streak) == (HEALTHY, 0)


def test_once_healthy_failures_count_even_inside_the_start_period():
    m = monitor(retries=2)
    m._record(Probe(1005.0, 0, "", 0.1))
    m._record(Probe(1010.0, 1, "", 0.1))
    m._record(Probe(1015.0, 1, "", 0.1))
    assert m.status == UNHEALTHY


def test_the_probe_interval_is_the_start_interval_while_starting():
    m = monitor()
    import time

    m.started_at = time.monotonic()
    assert m._interval() == 5.0
    m.status = HEALTHY
    assert m._interval() == 10.0
    m.started_at = time.monotonic() - 60
    m.status = STARTING
    assert m._interval() == 10.0


def test_summary_is_json():
    json.dumps(monitor().summary())
