// @ts-check
/**
 * The console's amounts (web/console/money.js): integer minor units formatted exactly, with the
 * currency's own minor-unit digits, at any size; anything that is not an exact integer is shown as
 * unknown, never rounded.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { formatMinor, minorDigits, toMinor } from "../../web/console/money.js";

test("minor units become units and fraction with the currency's digits", () => {
  const cases = [
    [0, "USD", "0.00 USD"],
    [5, "USD", "0.05 USD"],
    [123456, "USD", "1,234.56 USD"],
    [-1234567, "EUR", "\u221212,345.67 EUR"],
    [5000, "JPY", "5,000 JPY"],
    [-5, "JPY", "\u22125 JPY"],
    [7, "BHD", "0.007 BHD"],
    [1234567, "BHD", "1,234.567 BHD"],
    [2 ** 51, "USD", "22,517,998,136,852.48 USD"],
    ["18446744073709551616", "USD", "184,467,440,737,095,516.16 USD"],
    ["-9300000000000000000", "USD", "\u221293,000,000,000,000,000.00 USD"],
    [100, "ZZZ", "1.00 ZZZ"],
  ];
  for (const [value, currency, expected] of cases) {
    assert.equal(formatMinor(value, String(currency)), expected, `${value} ${currency}`);
  }
});

test("a value that is not an exact integer is unknown, not rounded", () => {
  for (const value of [1.5, Number.NaN, 2 ** 53, "1.5", "1e3", "", " 1", null, undefined, {}]) {
    assert.equal(toMinor(value), null, String(value));
    assert.equal(formatMinor(value, "USD"), "\u2014");
  }
});

test("the currency's minor-unit digits come from ISO 4217 data, 2 when unknown", () => {
  assert.deepEqual(["USD", "EUR", "JPY", "KRW", "BHD", "KWD", "ZZZ"].map(minorDigits), [2, 2, 0, 0, 3, 3, 2]);
});
