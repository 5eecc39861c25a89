/**
 * The configuration (src/config.ts): parsed once per environment, each value with its default,
 * and the speed mechanisms as named switches whose other position still works.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { commandGroups } from "../../src/app/command-groups";
import {
  ALERT_THRESHOLDS_DEFAULT,
  CONSOLE_ORIGIN_DEFAULT,
  configOf,
  PROJECTION_COALESCE_MS_DEFAULT,
  PROJECTION_HOLD_WAIT_MS_DEFAULT,
  VERIFY_FULL_FOLD_EVENTS_MAX_DEFAULT,
} from "../../src/config";
import { chainHash, sha256Hex, useChainSha256 } from "../../src/domain/chain";
import { SEGMENT_EVENTS_MAX } from "../../src/domain/limits";
import { ConfigError } from "../../src/errors";
import worker from "../../src/index";
import { queueDelivery } from "../../src/projection/producer/delivery";
import type { ProjectionMessage } from "../../src/projection/wire";
import { AUTH, api, openAccount } from "../helpers";

describe("configuration", () => {
  it("defaults every value and every switch", () => {
    const config = configOf({});
    expect(config).toMatchObject({
      consoleOrigin: CONSOLE_ORIGIN_DEFAULT,
      logRequests: true,
      groupCommit: true,
      chainSha256: "js",
      projection: {
        direct: false,
        coalesceMs: PROJECTION_COALESCE_MS_DEFAULT,
        holdWaitMs: PROJECTION_HOLD_WAIT_MS_DEFAULT,
        cursorWithCommand: false,
        loneSend: true,
      },
      verifyFullFoldEventsMax: VERIFY_FULL_FOLD_EVENTS_MAX_DEFAULT,
      alerts: ALERT_THRESHOLDS_DEFAULT,
    });
    expect(config.archive.eventsMax).toBe(SEGMENT_EVENTS_MAX);
  });

  it("reads each switch's other position, and falls back on what is not of its form", () => {
    const config = configOf({
      GROUP_COMMIT: "off",
      CHAIN_SHA256: "node",
      PROJECTION_HOLD_WAIT_MS: "0",
      PROJECTION_CURSOR_WITH_COMMAND: "on",
      PROJECTION_LONE_SEND: "off",
      PROJECTION_COALESCE_MS: "-5",
      SEGMENT_EVENTS_MAX: "1.5",
      VERIFY_FULL_FOLD_EVENTS_MAX: "10",
    });
    expect(config.groupCommit).toBe(false);
    expect(config.chainSha256).toBe("node");
    expect(config.projection).toMatchObject({ holdWaitMs: 0, cursorWithCommand: true, loneSend: false });
    // An amount that can be off is off for anything but a positive number (a flush at once).
    expect(config.projection.coalesceMs).toBe(0);
    expect(configOf({ PROJECTION_HOLD_WAIT_MS: "soon" }).projection.holdWaitMs).toBe(0);
    expect(configOf({ VERIFY_FULL_FOLD_EVENTS_MAX: "0" }).verifyFullFoldEventsMax).toBe(0);
    expect(config.archive.eventsMax).toBe(SEGMENT_EVENTS_MAX);
    expect(config.verifyFullFoldEventsMax).toBe(10);
  });

  it("parses an environment once, and refuses a malformed retention only when it is read", () => {
    const vars = { RAW_EVENTS_WINDOW_DAYS: "0" };
    const config = configOf(vars);
    expect(configOf(vars)).toBe(config);
    expect(() => config.retention).toThrow(ConfigError);
    // Shared by every object of an isolate, so nobody may change it.
    expect(Object.isFrozen(config.archive)).toBe(true);
    expect(() => {
      (config.archive as { eventsMax: number }).eventsMax = 1;
    }).toThrow(TypeError);
    // The switches wrangler.toml deploys (and the tests run with) are the code's defaults.
    const switches = (c: ReturnType<typeof configOf>) => ({
      groupCommit: c.groupCommit,
      chainSha256: c.chainSha256,
      holdWaitMs: c.projection.holdWaitMs,
      cursorWithCommand: c.projection.cursorWithCommand,
      loneSend: c.projection.loneSend,
    });
    expect(switches(configOf(env))).toEqual(switches(configOf({})));
    expect((env as { GROUP_COMMIT?: string }).GROUP_COMMIT).toBe("on");
  });
});

describe("switches", () => {
  it("CHAIN_SHA256=node hashes the chain to the same bytes as the JavaScript SHA-256", () => {
    const event = { seq: 1, type: "FundsCredited", amount: 5, note: "é😀" };
    const js = chainHash("0".repeat(64), event);
    try {
      useChainSha256("node");
      expect(chainHash("0".repeat(64), event)).toBe(js);
      expect(sha256Hex("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    } finally {
      useChainSha256("js");
    }
  });

  it("PROJECTION_LONE_SEND=off sends a lone message by sendBatch", async () => {
    const calls: string[] = [];
    const queue = {
      send: async () => void calls.push("send"),
      sendBatch: async () => void calls.push("sendBatch"),
    } as unknown as Queue<string>;
    const direct = async () => ({ accepted: 0 });
    const message = { account_id: "a", from_seq: 1, to_seq: 1 } as unknown as ProjectionMessage;
    expect(await queueDelivery(queue, direct, true)([message])).toEqual({ accepted: 1 });
    expect(await queueDelivery(queue, direct, false)([message])).toEqual({ accepted: 1 });
    expect(calls).toEqual(["send", "sendBatch"]);
  });

  it("GROUP_COMMIT=off sends a keyed command alone, never through the account's line", async () => {
    const id = await openAccount(1_000);
    const original = commandGroups.execute;
    let grouped = 0;
    commandGroups.execute = (...args) => {
      grouped += 1;
      return original.apply(commandGroups, args);
    };
    try {
      const charge = async (target: object, chargeId: string) => {
        const ctx = createExecutionContext();
        const request = new Request(`http://ledger.test/v1/accounts/${id}/charges`, {
          method: "POST",
          headers: { ...AUTH, "content-type": "application/json" },
          body: JSON.stringify({ charge_id: chargeId, amount: 1 }),
        });
        const response = await worker.fetch(request, target as never, ctx);
        await waitOnExecutionContext(ctx);
        return response.status;
      };
      expect(await charge({ ...env, GROUP_COMMIT: "off" }, "alone")).toBe(201);
      expect(grouped).toBe(0);
      expect(await charge(env, "grouped")).toBe(201);
      expect(grouped).toBe(1);
      expect((await api("GET", `/v1/accounts/${id}`)).body).toMatchObject({ balance: 998 });
    } finally {
      commandGroups.execute = original;
    }
  });
});
