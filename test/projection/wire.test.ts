/**
 * The wire format is declared once (src/projection/wire.ts, rows.ts, rollups.ts); the read side's
 * SQL views read its cells by position. These tests hold every positional read in the migrated
 * schema against the declaration, so a column added to one and not the other fails here instead
 * of shifting every later column of every report.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ROLLUP_COLUMNS } from "../../src/projection/rollups";
import { LEDGER_EVENT_COLUMNS } from "../../src/projection/rows";
import { EVENT_CELL_COLUMNS } from "../../src/projection/wire";

async function viewSql(name: string): Promise<string> {
  const row = await env.DB.prepare("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?")
    .bind(name)
    .first<{ sql: string }>();
  expect(row, `view ${name}`).not.toBeNull();
  return (row as { sql: string }).sql;
}

/** Each `...'$[i]') AS name` of a view: the cell index it reads under each column name. */
function positional(sql: string): Map<string, number> {
  const reads = new Map<string, number>();
  // A cell added later reads as 0 (or '') where older rows lack it: COALESCE(CAST(...) AS INTEGER), 0).
  for (const match of sql.matchAll(/'\$\[(\d+)\]'\)(?: AS INTEGER\))?(?:, (?:0|'')\))? AS (\w+)/g)) {
    reads.set(match[2] as string, Number(match[1]));
  }
  return reads;
}

async function columnsOf(table: string): Promise<string[]> {
  const rows = await env.DB.prepare("SELECT name FROM pragma_table_info(?)").bind(table).all<{ name: string }>();
  return rows.results.map((r) => r.name);
}

describe("the wire format against the read side's schema", () => {
  it("ledger_events reads every event cell at the position the declaration gives it", async () => {
    const reads = positional(await viewSql("ledger_events"));
    expect([...reads.keys()]).toEqual([...EVENT_CELL_COLUMNS]);
    for (const [i, column] of EVENT_CELL_COLUMNS.entries()) expect(reads.get(column), column).toBe(i);
    expect(await columnsOf("ledger_events")).toEqual([...LEDGER_EVENT_COLUMNS]);
  });

  it("open_rollups reads every rollup cell at its ROLLUP_COLUMNS position (account_id aside)", async () => {
    const reads = positional(await viewSql("open_rollups"));
    const cells = ROLLUP_COLUMNS.slice(1);
    expect([...reads.keys()]).toEqual([...cells]);
    for (const [i, column] of cells.entries()) expect(reads.get(column), column).toBe(i);
  });

  it("rollup_rows and the rollups view have the declared columns, in order", async () => {
    expect(await columnsOf("rollup_rows")).toEqual([...ROLLUP_COLUMNS]);
    expect(await columnsOf("rollups")).toEqual([...ROLLUP_COLUMNS]);
  });
});
