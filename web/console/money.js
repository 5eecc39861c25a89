// @ts-check
/**
 * Amounts for people, from integer minor units, exactly. The ledger keeps money as integers of
 * the currency's minor unit (src/domain/money.ts) and names the currency by its ISO 4217 code; a
 * single account's amounts are JSON integers (at most 2^51), totals across accounts or time are
 * decimal strings (docs/api.md, "Reports"). Both become a BigInt here and are split into units and
 * fraction with string arithmetic: no amount ever passes through a floating-point number.
 */

/** Minor-unit digits when the runtime does not know the currency (most currencies have 2). */
export const MINOR_DIGITS_DEFAULT = 2;

const INTEGER_PATTERN = /^-?\d+$/;

/**
 * The number of minor-unit digits of an ISO 4217 currency (USD 2, JPY 0, BHD 3), from the
 * runtime's own currency data (Intl); MINOR_DIGITS_DEFAULT for a code it does not know.
 * @param {string} currency
 */
export function minorDigits(currency) {
  try {
    const digits = new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits;
    return digits ?? MINOR_DIGITS_DEFAULT;
  } catch {
    return MINOR_DIGITS_DEFAULT;
  }
}

/**
 * An exact integer of minor units as a BigInt: a safe-integer number or a decimal string; null
 * for anything else (a float, NaN, a malformed string), which is shown as unknown, never rounded.
 * @param {unknown} value
 * @returns {bigint | null}
 */
export function toMinor(value) {
  if (typeof value === "bigint") return value;
  if (typeof value === "number") return Number.isSafeInteger(value) ? BigInt(value) : null;
  if (typeof value === "string" && INTEGER_PATTERN.test(value)) return BigInt(value);
  return null;
}

/** Groups the digits of a non-negative integer string by thousands: "1234567" -> "1,234,567". */
function groupThousands(/** @type {string} */ digits) {
  const head = digits.length % 3 || 3;
  const groups = [digits.slice(0, head)];
  for (let i = head; i < digits.length; i += 3) groups.push(digits.slice(i, i + 3));
  return groups.join(",");
}

/**
 * Formats minor units for people: 123456 USD -> "1,234.56 USD", -5 JPY -> "−5 JPY",
 * "18446744073709551616" USD -> "184,467,440,737,095,516.16 USD". "—" when the value is not an
 * exact integer.
 * @param {unknown} value @param {string} currency
 */
export function formatMinor(value, currency) {
  const minor = toMinor(value);
  if (minor === null) return "—";
  const digits = minorDigits(currency);
  const negative = minor < 0n;
  const absolute = (negative ? -minor : minor).toString().padStart(digits + 1, "0");
  const units = groupThousands(absolute.slice(0, absolute.length - digits));
  const fraction = digits === 0 ? "" : `.${absolute.slice(absolute.length - digits)}`;
  // U+2212 MINUS SIGN: reads as a minus, not a hyphen.
  return `${negative ? "\u2212" : ""}${units}${fraction} ${currency}`;
}
