/**
 * Exact sums across accounts (issue 11).
 *
 * Each account's balance is bounded (|balance| <= 2^51, src/domain/limits.ts), but a report total
 * adds up every account and every event: the trial balance and the usage report pass 2^53 (the
 * last exact JSON number) after about nine charges of 10^15, and 2^63 after 9,224, where SQLite's
 * integer SUM fails with "integer overflow" (a 500, forever after). TOTAL() would not fail, but
 * it is floating point, hence inexact.
 *
 * Method: split each value x in SQL into a high and a low part,
 *
 *   x = hi * 2^32 + lo,   hi = x >> 32 (arithmetic shift: -2^31 <= hi < 2^31),
 *                         lo = x & (2^32 - 1)          (0 <= lo < 2^32),
 *
 * which holds for every 64-bit integer, negative ones included. SQLite sums each part with its
 * exact integer SUM; the sums come out as decimal text (CAST AS TEXT, since D1 hands integers to
 * JavaScript as floating-point numbers) and the Worker joins them in BigInt:
 * total = (sum_hi << 32) + sum_lo.
 *
 * Bound: neither partial sum can overflow 64 bits before 2^31 (about 2.1 billion) rows are summed
 * in one group, whatever the values (|sum_hi| < n * 2^31, sum_lo < n * 2^32). One D1 database
 * (10 GB, about 210 bytes per event row) holds at most some 5 * 10^7 events, at most 3 journal
 * lines each: two orders of magnitude below. (With the domain's own bounds, every summed value is
 * below 2^53, so hi < 2^21 and only lo is the binding part.)
 *
 * Memory: the aggregation runs inside D1; the Worker reads only the aggregated rows, bounded by
 * the report (the trial balance has one row per ledger account, five in all; the usage report
 * reads a page of at most `limit + 1` <= 1,001 groups). No report streams events into the Worker.
 */

/** Bits in the low part. */
const LOW_BITS = 32n;
const LOW_MASK = 4_294_967_295; // 2^32 - 1

/**
 * The SELECT columns that sum `expression` exactly: `<alias>_hi` and `<alias>_lo`, decimal text,
 * '0' over no rows (NULL values are skipped, as SUM does). `expression` is trusted SQL text (a
 * column name or an expression of the code), never input.
 */
export function exactSumColumns(expression: string, alias: string): string {
  return [
    `CAST(COALESCE(SUM((${expression}) >> ${LOW_BITS}), 0) AS TEXT) AS ${alias}_hi`,
    `CAST(COALESCE(SUM((${expression}) & ${LOW_MASK}), 0) AS TEXT) AS ${alias}_lo`,
  ].join(", ");
}

/** Joins the two parts that `exactSumColumns(_, alias)` selected into the exact sum. */
export function exactSum(row: Record<string, unknown>, alias: string): bigint {
  return (part(row, `${alias}_hi`) << LOW_BITS) + part(row, `${alias}_lo`);
}

/**
 * The parts of two exact sums of `alias` added (one group's sums from two shards): `exactSum`
 * of the result is the sum of both totals, still exact.
 */
export function addExactSums(
  a: Record<string, unknown>,
  b: Record<string, unknown>,
  alias: string,
): Record<string, string> {
  const hi = `${alias}_hi`;
  const lo = `${alias}_lo`;
  return { [hi]: decimal(part(a, hi) + part(b, hi)), [lo]: decimal(part(a, lo) + part(b, lo)) };
}

function part(row: Record<string, unknown>, column: string): bigint {
  const value = row[column];
  // Text from CAST AS TEXT; a number only if a driver converted it back (exact below 2^53).
  if (typeof value === "string" && /^-?\d+$/.test(value)) return BigInt(value);
  if (typeof value === "number" && Number.isSafeInteger(value)) return BigInt(value);
  throw new Error(`exact sum: ${column} is not an integer (${String(value)})`);
}

/** A decimal string of an exact amount, as the reports answer it (see docs/api.md#reports). */
export function decimal(value: bigint): string {
  return value.toString();
}
