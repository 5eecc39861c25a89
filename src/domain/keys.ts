/**
 * Idempotency keys: which permanent key an operation consumes, how the key is spelled, and
 * where the account object records it. Caller-supplied ids are permanent (STYLE.md, Stripe):
 * the same key again is a replay or a conflict, never a second application.
 *
 * Three facts live here and nowhere else:
 * - `eventKey`: the key an event consumed (the command table's `key` must agree: the key a
 *   command looks up is the key its event records; a test checks this for every command).
 * - `encodeKey`: one unambiguous spelling. Ids may contain ":", so joining parts with ":" let
 *   `extend:a:b:c` mean two different extensions; canonical JSON cannot collide.
 * - `KEY_LOCATIONS`: where each kind of key is recorded. Entity rows double as key records
 *   (no extra row written for a reserve, capture, release, charge or open); the others get a
 *   row in the `operations` table. The table is a mapped type over every key kind, so a new
 *   kind without a location does not compile, and both the lookup and the commit read it.
 */
import { canonicalJson } from "./canonical";
import { type LedgerEvent, unreachable } from "./events";

export type OperationKey =
  | { op: "open" }
  | { op: "credit"; credit_id: string }
  | { op: "reserve"; reservation_id: string }
  | { op: "capture"; reservation_id: string }
  | { op: "release"; reservation_id: string }
  | { op: "extend"; reservation_id: string; extension_id: string }
  | { op: "charge"; charge_id: string }
  | { op: "refund"; refund_id: string }
  | { op: "adjustment"; adjustment_id: string };

export type OperationKind = OperationKey["op"];

/** Where a key is recorded, and so where its prior event's seq is found. */
export type KeyLocation =
  /** The account row exists: the key's event is seq 1. */
  | { in: "account" }
  /** The reservation row: its reserve_seq, or its end_seq if it ended with `ended_as`. */
  | { in: "reservation"; seq: "reserve_seq" }
  | { in: "reservation"; seq: "end_seq"; ended_as: "captured" | "released" }
  /** The charge row of a direct charge (a capture's charge row records the capture). */
  | { in: "charge"; kind: "direct" }
  /** A row of its own in the `operations` table, keyed by `encodeKey`. */
  | { in: "operations" };

export type KeyLocations<K extends string = OperationKind> = { readonly [kind in K]: KeyLocation };

export const KEY_LOCATIONS: KeyLocations = {
  open: { in: "account" },
  reserve: { in: "reservation", seq: "reserve_seq" },
  capture: { in: "reservation", seq: "end_seq", ended_as: "captured" },
  release: { in: "reservation", seq: "end_seq", ended_as: "released" },
  charge: { in: "charge", kind: "direct" },
  credit: { in: "operations" },
  refund: { in: "operations" },
  adjustment: { in: "operations" },
  extend: { in: "operations" },
};

export function keyLocation(key: OperationKey): KeyLocation {
  return KEY_LOCATIONS[key.op];
}

/** The id of the entity row (reservation or charge) that records `key`, if any. */
export function keyEntityId(key: OperationKey): string | null {
  if ("reservation_id" in key) return key.reservation_id;
  return "charge_id" in key ? key.charge_id : null;
}

/**
 * The one spelling of a key: its canonical JSON (RFC 8785: members sorted, no white space), so
 * no two different keys, whatever their ids contain, can spell the same.
 */
export function encodeKey(key: OperationKey): string {
  return canonicalJson(key);
}

/** The kind of key consumed by each event that records a reservation's reserve or its end. */
const RESERVATION_KEY_KINDS = {
  FundsReserved: "reserve",
  ReservationCaptured: "capture",
  ReservationReleased: "release",
} as const;

/**
 * The permanent key an event consumed, or null for events that consume none (account updates,
 * expiries, extensions without an extension_id).
 */
export function eventKey(event: LedgerEvent): OperationKey | null {
  switch (event.type) {
    case "AccountOpened":
      return { op: "open" };
    case "FundsCredited":
      return { op: "credit", credit_id: event.credit_id };
    case "FundsReserved":
    case "ReservationCaptured":
    case "ReservationReleased":
      return { op: RESERVATION_KEY_KINDS[event.type], reservation_id: event.reservation_id };
    case "ReservationExtended":
      return event.extension_id === null
        ? null
        : { op: "extend", reservation_id: event.reservation_id, extension_id: event.extension_id };
    case "AccountCharged":
      return { op: "charge", charge_id: event.charge_id };
    case "ChargeRefunded":
      return { op: "refund", refund_id: event.refund_id };
    case "BalanceAdjusted":
      return { op: "adjustment", adjustment_id: event.adjustment_id };
    case "AccountUpdated":
    case "ReservationExpired":
    case "LotExpired":
    case "LotsOpened":
    case "LimitSet":
    case "LimitRemoved":
      return null;
    default:
      return unreachable(event);
  }
}

/** The encoded key of an event, or null. */
export function eventKeyString(event: LedgerEvent): string | null {
  const key = eventKey(event);
  return key === null ? null : encodeKey(key);
}
