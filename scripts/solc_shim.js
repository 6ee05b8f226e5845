#!/usr/bin/env node
// Minimal native-solc stand-in over solc-js (WebAssembly) for py-solc-x and slither.
// `--version` -> "Version: <solc.version()>"; `--standard-json` -> read stdin, compile,
// resolve imports from --base-path/--include-path, the cwd and contracts/node_modules,
// print the output JSON to stdout. `--allow-paths` (and other flags) are ignored.
// `<files> --combined-json <fields>` (what slither/crytic-compile call) is translated to a
// standard-json compile (remappings `a=b` taken from the arguments) and converted back.
'use strict';
const fs = require('fs');
const path = require('path');

const contractsDir = path.resolve(__dirname, '..', 'contracts');
const nodeModules = path.join(contractsDir, 'node_modules');
const solc = require(require.resolve('solc', { paths: [nodeModules, __dirname] }));

const argv = process.argv.slice(2);
const roots = [];
const files = [];
const remappings = [];
let combined = null;
let viaIR = false;
let optimize = false;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--base-path' || a === '--include-path') {
    roots.push(argv[++i]);
  } else if (a.startsWith('--base-path=') || a.startsWith('--include-path=')) {
    roots.push(a.slice(a.indexOf('=') + 1));
  } else if (a === '--allow-paths' || a === '--evm-version' || a === '--optimize-runs') {
    i++;
  } else if (a === '--combined-json') {
    combined = argv[++i];
  } else if (a === '--via-ir') {
    viaIR = true;
  } else if (a === '--optimize') {
    optimize = true;
  } else if (!a.startsWith('-') && a.includes('=')) {
    remappings.push(a);
  } else if (!a.startsWith('-')) {
    files.push(a);
  }
}
roots.push(process.cwd(), path.resolve(__dirname, '..'), nodeModules);

function findImports(p) {
  const candidates = path.isAbsolute(p) ? [p] : roots.map((r) => path.resolve(r, p));
  for (const c of candidates) {
    try {
      return { contents: fs.readFileSync(c, 'utf8') };
    } catch (e) { /* try next root */ }
  }
  return { error: 'File not found: ' + p };
}

if (argv.includes('--version')) {
  process.stdout.write('solc, the solidity compiler commandline interface\nVersion: ' + solc.version() + '\n');
} else if (argv.includes('--standard-json')) {
  const input = fs.readFileSync(0, 'utf8');
  process.stdout.write(solc.compile(input, { import: findImports }));
  process.stdout.write('\n');
} else if (combined !== null) {
  const sources = {};
  for (const f of files) sources[f] = { content: fs.readFileSync(f, 'utf8') };
  const input = {
    language: 'Solidity',
    sources,
    settings: {
      remappings, viaIR, optimizer: { enabled: optimize || viaIR, runs: 200 },
      evmVersion: 'cancun',
      outputSelection: { '*': { '*': ['abi', 'evm.bytecode', 'evm.deployedBytecode',
        'evm.methodIdentifiers', 'userdoc', 'devdoc'], '': ['ast'] } },
    },
  };
  const out = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const errors = (out.errors || []).filter((e) => e.severity === 'error');
  if (errors.length) {
    for (const e of errors) process.stderr.write(e.formattedMessage + '\n');
    process.exit(1);
  }
  const result = { contracts: {}, sources: {}, sourceList: [], version: solc.version() };
  const ids = Object.entries(out.sources || {}).sort((x, y) => x[1].id - y[1].id);
  for (const [path, src] of ids) {
    result.sourceList.push(path);
    result.sources[path] = { AST: src.ast };
  }
  for (const [path, byName] of Object.entries(out.contracts || {})) {
    for (const [name, c] of Object.entries(byName)) {
      result.contracts[path + ':' + name] = {
        abi: c.abi, bin: c.evm.bytecode.object, 'bin-runtime': c.evm.deployedBytecode.object,
        srcmap: c.evm.bytecode.sourceMap || '', 'srcmap-runtime': c.evm.deployedBytecode.sourceMap || '',
        hashes: c.evm.methodIdentifiers, userdoc: c.userdoc, devdoc: c.devdoc,
      };
    }
  }
  process.stdout.write(JSON.stringify(result) + '\n');
} else {
  process.stderr.write('solc_shim: only --version, --standard-json and --combined-json are supported\n');
  process.exit(1);
}
