// @ts-check
/**
 * Writes a synthetic, correctly chained export of N events (credits, reservations, captures,
 * charges and refunds) for the offline verifier's benchmark: `node bench/make-export.mjs N file`.
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { canonicalize } from "../src/audit/verifier.mjs";

const total = Number(process.argv[2] ?? 1_000_000);
const out = createWriteStream(process.argv[3] ?? "export.ndjson");
let prev = "0".repeat(64);
let seq = 0;
let balance = 0;
let reserved = 0;
const at = "2026-11-28T12:00:00.000Z";
let buffer = "";

/** @param {Record<string, unknown>} body @param {number} db @param {number} dr */
function emit(body, db, dr) {
  seq += 1;
  balance += db;
  reserved += dr;
  const event = { ...body, seq, event_id: `ev${seq}`, at, balance_after: balance, reserved_after: reserved };
  const canonical = canonicalize(event);
  prev = createHash("sha256")
    .update(prev + canonical)
    .digest("hex");
  // As the ledger exports: canonical members, "hash" last.
  buffer += `${canonical.slice(0, -1)},"hash":"${prev}"}\n`;
}

emit({ type: "AccountOpened", account_id: "bench", currency: "USD", credit_limit: 0, metadata: {} }, 0, 0);
for (let i = 0; seq < total; i++) {
  const kind = i % 4;
  if (kind === 0) emit({ type: "FundsCredited", credit_id: `c${i}`, amount: 100, reason: null, metadata: {} }, 100, 0);
  else if (kind === 1) {
    emit(
      {
        type: "FundsReserved",
        reservation_id: `r${i}`,
        amount: 10,
        ttl_seconds: 900,
        expires_at: at,
        on_expiry: "release",
        context: { model: "m" },
        metadata: {},
      },
      0,
      10,
    );
  } else if (kind === 2) {
    emit(
      {
        type: "ReservationCaptured",
        reservation_id: `r${i - 1}`,
        reserved_amount: 10,
        amount: 7,
        released_amount: 3,
        overage: 0,
        allow_overage: false,
        context: { model: "m" },
        usage: { input_tokens: 10, output_tokens: 5 },
        metadata: {},
      },
      -7,
      -10,
    );
  } else {
    emit({ type: "AccountCharged", charge_id: `ch${i}`, amount: 2, context: {}, metadata: {} }, -2, 0);
  }
  if (buffer.length > 1 << 20) {
    if (!out.write(buffer)) await new Promise((resolve) => out.once("drain", resolve));
    buffer = "";
  }
}
out.end(buffer);
