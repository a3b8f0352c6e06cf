/**
 * Import boundaries of src/ (npm run lint). Each folder sits on a layer and may import only its
 * own folder and the layers below it — never one above, nor a sibling on its own layer:
 *
 *   cli                     commands: parse, call, render
 *   backup  restore         the two pipelines (and bkp run jobs, verify)
 *   config  report          the configuration file; progress lines, metrics
 *   blksnap                 the kernel module: snapshots, CBT
 *   lock                    one bkp per device (on the repository's lock algorithm)
 *   repo    device          the repository format; block-device facts, sources, sinks
 *   storage                 the Target interface; local directory and S3 targets
 *   shared                  helpers for every layer: sizes, buffer pool, durations
 *   native  src/*.ts        the C++ addon; errors (exit codes), faults, version
 */
const LAYERS = [['cli'], ['backup', 'restore'], ['config', 'report'], ['blksnap'], ['lock'], ['repo', 'device'], ['storage'], ['shared'], ['native']];

const folder = (name) => `^src/${name}/`;
const forbidden = [];
LAYERS.forEach((layer, i) => {
  for (const name of layer) {
    // everything above this layer, and this layer's other folders
    const upward = [...LAYERS.slice(0, i).flat(), ...layer.filter((n) => n !== name)];
    if (upward.length === 0) continue;
    forbidden.push({
      name: `${name}-imports-upward`,
      comment: `src/${name}/ may import only from layers below it (.dependency-cruiser.cjs lists them)`,
      severity: 'error',
      from: { path: folder(name) },
      to: { path: `^src/(${upward.join('|')})/` },
    });
  }
});
// the top-level files (errors.ts, faults.ts, version.ts) are the bottom: they import no folder
forbidden.push({
  name: 'root-files-import-nothing',
  comment: 'src/*.ts (errors, faults, version) sit below every folder',
  severity: 'error',
  from: { path: '^src/[^/]+\\.ts$' },
  to: { path: '^src/[^/]+/' },
});
// the product never imports the tests
forbidden.push({
  name: 'src-imports-test',
  comment: 'test scaffolding stays out of the product',
  severity: 'error',
  from: { path: '^src/' },
  to: { path: '^test/' },
});

module.exports = {
  forbidden,
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
