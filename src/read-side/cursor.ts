/**
 * Opaque keyset-pagination cursors: the sort key of the last row returned, as base64url JSON.
 * A cursor that does not decode to the expected shape is a client error, never a 500.
 */
import { base64urlToBytes, bytesToBase64url } from "../encoding";
import { LedgerError } from "../errors";

export type CursorKey = (string | number)[];

/** A cursor the client sent that is not one of ours; answered as invalid_request. */
export class BadCursor extends LedgerError {
  override name = "BadCursor";
  readonly code = "invalid_request";
  readonly publicDetail = "The cursor is not one this API issued.";
  override readonly fieldErrors = [{ field: "cursor", message: "invalid cursor" }];
}

export function encodeCursor(key: CursorKey): string {
  return bytesToBase64url(new TextEncoder().encode(JSON.stringify(key)));
}

/** Decodes a cursor of `arity` string/number parts, or returns null if it is not one. */
export function decodeCursor(cursor: string, arity: number): CursorKey | null {
  try {
    const value: unknown = JSON.parse(new TextDecoder().decode(base64urlToBytes(cursor)));
    if (!Array.isArray(value) || value.length !== arity) return null;
    if (!value.every((v) => typeof v === "string" || (typeof v === "number" && Number.isSafeInteger(v)))) return null;
    return value as CursorKey;
  } catch {
    return null;
  }
}
