// Reads LogQL queries (one JSON array on stdin), prints the ones the grammar rejects.
const { parser } = require("@grafana/lezer-logql");
const queries = JSON.parse(require("fs").readFileSync(0, "utf8"));
const bad = [];
for (const q of queries) {
  const tree = parser.parse(q);
  let err = null;
  tree.iterate({ enter: (n) => { if (n.type.isError && err === null) err = n.from; } });
  if (err !== null) bad.push({ query: q, at: err });
}
console.log(JSON.stringify(bad));
