/**
 * The layering rules of docs/architecture.md ("Layers"), held against the code's own imports so
 * that a change that breaks one fails here, not in a later review: no import cycle at all (type
 * imports included), the account object reached only through its contract, observability a leaf,
 * the projection below the reports, and the account object's file a thin shell.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** The account object's file stays a shell that wires its parts (issue 26). */
const ACCOUNT_OBJECT_LINES_MAX = 250;

/** @param {string} dir @returns {string[]} */
function sources(dir) {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory()) return sources(path);
    return /\.(ts|mjs)$/.test(name) && !name.endsWith(".d.ts") ? [path] : [];
  });
}

/**
 * Every relative import of a file (type imports and re-exports too), as repository paths.
 * @param {string} file @returns {string[]}
 */
function importsOf(file) {
  const text = readFileSync(join(ROOT, file), "utf8");
  const found = [];
  for (const match of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?from\s+"(\.{1,2}\/[^"]+)"/g)) {
    const target = relative(ROOT, resolve(ROOT, dirname(file), match[1])).replace(/\.(ts|mjs|js)$/, "");
    found.push(target);
  }
  return found;
}

const FILES = [...sources("src"), ...sources("durable-objects")];
const BY_MODULE = new Map(FILES.map((file) => [file.replace(/\.(ts|mjs)$/, ""), file]));
/** @type {Map<string, string[]>} Each file and the files it imports. */
const GRAPH = new Map(FILES.map((file) => [file, importsOf(file).flatMap((m) => BY_MODULE.get(m) ?? [])]));

/** @param {string} from @param {string} into @returns {string[]} */
function importersOf(from, into) {
  return FILES.filter((file) => file.startsWith(from)).flatMap((file) =>
    (GRAPH.get(file) ?? []).filter((target) => target.startsWith(into)).map((target) => `${file} -> ${target}`),
  );
}

test("the import graph has no cycle, type imports included", () => {
  /** @type {Map<string, "open" | "done">} */
  const state = new Map();
  /** @type {string[]} */
  const cycles = [];
  /** @param {string} file @param {string[]} path */
  const visit = (file, path) => {
    state.set(file, "open");
    for (const next of GRAPH.get(file) ?? []) {
      if (state.get(next) === "open") cycles.push([...path.slice(path.indexOf(next)), next].join(" -> "));
      else if (!state.has(next)) visit(next, [...path, next]);
    }
    state.set(file, "done");
  };
  for (const file of FILES) if (!state.has(file)) visit(file, [file]);
  assert.deepEqual(cycles, []);
  // The graph is read: the rule above is about real edges.
  assert.ok((GRAPH.get("src/index.ts") ?? []).length > 0);
});

test("the Worker's layers reach the objects only through their contracts", () => {
  for (const layer of ["src/app/", "src/http/", "src/observability/", "src/projection/", "src/env.ts"]) {
    assert.deepEqual(importersOf(layer, "durable-objects/"), [], layer);
  }
});

test("observability is a leaf and the projection sits below the reports", () => {
  for (const above of ["src/projection/", "src/webhooks/", "src/sweep.ts", "src/cron.ts"]) {
    assert.deepEqual(importersOf("src/observability/", above), [], above);
  }
  assert.deepEqual(importersOf("src/projection/", "src/reports/"), []);
});

test(`the account object's file is at most ${ACCOUNT_OBJECT_LINES_MAX} lines`, () => {
  const lines = readFileSync(join(ROOT, "durable-objects/account.ts"), "utf8").split("\n").length - 1;
  assert.ok(lines <= ACCOUNT_OBJECT_LINES_MAX, `${lines} lines`);
});
