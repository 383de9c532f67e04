#!/usr/bin/env node
// Node entry point of the command-line tool; `npm run build` in client/ makes dist/.

// supabase-js 2.119 warns on every start under Node 20, which would break the
// tool's promise of one line per failure; drop only that warning.
const warn = console.warn;
console.warn = (...args) => {
  if (String(args[0]).includes("Node.js 20 and below are deprecated")) return;
  warn(...args);
};

await import("../dist/main.js");
