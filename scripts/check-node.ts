// The project pins Node 24 through the `node` package; npm scripts put node_modules/.bin first on PATH.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  console.error(`arcnet needs Node.js 24 (found ${process.version}); run "npm install" so the pinned Node is used.`);
  process.exit(1);
}
