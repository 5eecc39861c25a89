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
import { auditKey, signCheckpoint } from "../audit/signing";
import { clock } from "../clock";
import { canonicalJson } from "../domain/canonical";
import type { LedgerEvent } from "../domain/events";
import { EVENTS_PAGE_LIMIT_MAX } from "../domain/limits";
import type { AppEnv } from "./context";
import { respond } from "./respond";
import { defineRoute } from "./route";

/**
 * One export line: the event's canonical JSON (the very bytes its hash covers) with "hash" as its
 * last member, so a verifier can check the chain over the line's own bytes.
 */
export function exportLine(event: LedgerEvent): string {
  const { hash, ...rest } = event;
  return `${canonicalJson(rest).slice(0, -1)},"hash":"${hash}"}\n`;
}

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
        "One event per line. The Worker pages through the account object 1,000 events at a time, so memory stays constant whatever the log's length.",
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
      const first = await stub.listEvents(0, EVENTS_PAGE_LIMIT_MAX);
      if (!first.ok) return respond(c, readOutcome(first));
      const encoder = new TextEncoder();
      let page: typeof first.body | null = first.body;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (page === null) {
            controller.close();
            return;
          }
          controller.enqueue(encoder.encode(page.events.map(exportLine).join("")));
          const next = page.next_after_seq;
          if (next === null) {
            page = null;
            return;
          }
          const result = await stub.listEvents(next, EVENTS_PAGE_LIMIT_MAX);
          if (!result.ok) {
            controller.error(new Error(result.rejection.code));
            return;
          }
          page = result.body;
        },
      });
      return new Response(body, {
        headers: { "content-type": "application/x-ndjson", "request-id": c.get("requestId") },
      });
    },
  );
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
