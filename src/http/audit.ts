/**
 * Audit routes: the export stream, point-in-time balances, in-object verification, and signed
 * checkpoints with the public key that checks them. docs/audit.md walks through them.
 */

import type { OpenAPIHono } from "@hono/zod-openapi";
import { accountClient } from "../app/account-client";
import { readOutcome } from "../app/outcome";
import { AccountParams } from "../app/schemas/accounts";
import {
  BalanceAsOf,
  BalanceAsOfQuery,
  Event,
  PublicKeySchema,
  SignedCheckpointSchema,
  VerifyReportSchema,
} from "../app/schemas/audit";
import { exportLine } from "../audit/export-line";
import { auditKey, signCheckpoint } from "../audit/signing";
import { clock } from "../clock";
import type { SegmentEntry } from "../contract";
import { EVENTS_PAGE_LIMIT_MAX } from "../domain/limits";
import type { AppEnv } from "./context";
import { respond } from "./respond";
import { defineRoute } from "./route";

export function registerAuditRoutes(app: OpenAPIHono<AppEnv>): void {
  registerExportEvents(app);
  registerGetBalanceAsOf(app);
  registerVerifyAccount(app);
  registerGetCheckpoint(app);
  registerGetAuditPublicKey(app);
}

function registerExportEvents(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/accounts/{account_id}/events/export",
      operationId: "exportEvents",
      tag: "Audit",
      scope: "audit:read",
      summary: "The whole event log as NDJSON, in seq order, streamed",
      description:
        "One event per line. Sealed segments are piped from the archive as they are stored, then the tail is paged from the account object 1,000 events at a time, so memory stays constant whatever the log's length.",
      params: AccountParams,
      success: {
        status: 200,
        schema: Event,
        description: "NDJSON, one event per line.",
        mediaType: "application/x-ndjson",
      },
      errors: ["account_not_found"],
    },
    async (c, { params }) => {
      const stub = accountClient(c.env, params.account_id);
      const first = await stub.segments(0, EXPORT_SEGMENTS_PAGE_MAX);
      if (!first.ok) return respond(c, readOutcome(first));
      const body = exportStream(c.env.ARCHIVE ?? null, stub, first.body.segments);
      return new Response(body, {
        headers: { "content-type": "application/x-ndjson", "request-id": c.get("requestId") },
      });
    },
  );
}

/** Segments listed per call to the account object while exporting. */
const EXPORT_SEGMENTS_PAGE_MAX = 100;

type AccountStub = ReturnType<typeof accountClient>;

/**
 * The whole history as NDJSON: each sealed segment's object piped from R2 as it is (its bytes
 * are the export's lines), one chunk at a time, then the tail a page at a time from the object
 * (which also reads any segment sealed meanwhile). Memory stays constant whatever the length.
 */
function exportStream(bucket: R2Bucket | null, stub: AccountStub, listed: SegmentEntry[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let segments = listed;
  let listing = listed.length === EXPORT_SEGMENTS_PAGE_MAX;
  let after = 0;
  let piping: ReadableStreamDefaultReader<Uint8Array> | null = null;
  let done = false;
  // Each pull enqueues a chunk or ends the stream: a pull that did neither would never be called again.
  const next = async (): Promise<Uint8Array | null> => {
    for (;;) {
      if (piping !== null) {
        const chunk = await piping.read();
        if (!chunk.done) return chunk.value;
        piping = null;
        continue;
      }
      const segment = segments[0];
      if (segment !== undefined) {
        segments = segments.slice(1);
        const object = bucket === null ? null : await bucket.get(segment.object);
        if (object === null) throw new Error(`segment ${segment.object} is unavailable`);
        piping = object.body.getReader();
        after = segment.last_seq;
        continue;
      }
      if (listing) {
        const page = await stub.segments(after, EXPORT_SEGMENTS_PAGE_MAX);
        if (!page.ok) throw new Error(page.rejection.code);
        segments = page.body.segments;
        listing = segments.length === EXPORT_SEGMENTS_PAGE_MAX;
        continue;
      }
      if (done) return null;
      const result = await stub.listEvents(after, EVENTS_PAGE_LIMIT_MAX);
      if (!result.ok) throw new Error(result.rejection.code);
      if (result.body.next_after_seq === null) done = true;
      else after = result.body.next_after_seq;
      if (result.body.events.length > 0) return encoder.encode(result.body.events.map(exportLine).join(""));
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const chunk = await next();
        if (chunk === null) controller.close();
        else controller.enqueue(chunk);
      } catch (error) {
        controller.error(error);
      }
    },
  });
}

function registerGetBalanceAsOf(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/accounts/{account_id}/balance",
      operationId: "getBalanceAsOf",
      tag: "Audit",
      scope: "ledger:read",
      summary: "Balances as of a time or a seq, read from the log",
      description: "Give exactly one of `at` (RFC 3339) or `seq`. Found by binary search over the log, not by replay.",
      params: AccountParams,
      query: BalanceAsOfQuery,
      success: { status: 200, schema: BalanceAsOf, description: "Balance, reserved and available at that point." },
      errors: ["account_not_found"],
    },
    async (c, { params, query }) => {
      const point = query.seq !== undefined ? { seq: query.seq } : { at: query.at as string };
      const result = await accountClient(c.env, params.account_id).balanceAsOf(point);
      if (!result.ok) return respond(c, readOutcome(result));
      return c.json({ account_id: params.account_id, ...result.body });
    },
  );
}

function registerVerifyAccount(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/accounts/{account_id}/verify",
      operationId: "verifyAccount",
      tag: "Audit",
      scope: "audit:read",
      summary: "Recompute the hash chain and the fold inside the ledger",
      params: AccountParams,
      success: { status: 200, schema: VerifyReportSchema, description: "ok, or the first bad seq and why." },
      errors: ["account_not_found"],
    },
    async (c, { params }) => {
      const stub = accountClient(c.env, params.account_id);
      const head = await stub.head();
      if (!head.ok) return respond(c, readOutcome(head));
      return c.json(await stub.verify());
    },
  );
}

function registerGetCheckpoint(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/accounts/{account_id}/checkpoint",
      operationId: "getCheckpoint",
      tag: "Audit",
      scope: "audit:read",
      summary: "A fresh signed checkpoint of the account's head",
      params: AccountParams,
      success: {
        status: 200,
        schema: SignedCheckpointSchema,
        description: "The checkpoint and its Ed25519 signature.",
      },
      errors: ["account_not_found", "audit_key_unavailable"],
    },
    async (c, { params }) => {
      const key = await auditKey(c.env.AUDIT_SIGNING_KEY);
      const head = await accountClient(c.env, params.account_id).head();
      if (!head.ok) return respond(c, readOutcome(head));
      return c.json(await signCheckpoint(key, { ...head.body, at: new Date(clock.now()).toISOString() }));
    },
  );
}

function registerGetAuditPublicKey(app: OpenAPIHono<AppEnv>): void {
  defineRoute(
    app,
    {
      method: "get",
      path: "/v1/audit/public-key",
      operationId: "getAuditPublicKey",
      tag: "Audit",
      scope: "audit:read",
      accounts: () => "any",
      summary: "The Ed25519 public key that checks checkpoints",
      success: { status: 200, schema: PublicKeySchema, description: "The public key, raw, base64url." },
      errors: ["audit_key_unavailable"],
    },
    async (c) => {
      const key = await auditKey(c.env.AUDIT_SIGNING_KEY);
      return c.json({ algorithm: "Ed25519", key_id: key.keyId, public_key: key.publicKey });
    },
  );
}
