/**
 * The command table (src/domain/table.ts) and the idempotency keys (src/domain/keys.ts): every
 * command's key is the key its event records, keys are spelled without ambiguity, and a key
 * kind without a location, or a command without its entry, does not compile.
 */
import { describe, expect, it } from "vitest";
import type { Command, CommandType } from "../../src/domain/commands";
import { encodeKey, eventKey, KEY_LOCATIONS, type KeyLocations, type OperationKind } from "../../src/domain/keys";
import { COMMANDS, type CommandTable } from "../../src/domain/table";
import * as given from "./given";

// ---------------------------------------------------------------- compile-time guarantees
// These lines are checked by `tsc -p .` (npm test runs it first): each @ts-expect-error must
// meet an error, or the type check fails.

// A new kind of key that has no location in KEY_LOCATIONS does not compile, so no command can
// record a key where the lookup does not read it.
// @ts-expect-error "throwaway" has no key location
const _withThrowawayKind: KeyLocations<OperationKind | "throwaway"> = KEY_LOCATIONS;
// A command missing from the table does not compile either.
// @ts-expect-error the table must name every command
const _withoutCredit: CommandTable = (({ CreditFunds: _, ...rest }) => rest)(COMMANDS);
void _withThrowawayKind;
void _withoutCredit;

/** One accepted sample of every command, in an order that makes each applicable. */
function everyCommand(): Command[] {
  return [
    given.open(),
    given.credit(1_000, "c1"),
    given.freeze(),
    { type: "UpdateAccount", status: "active" },
    given.reserve("r1", 100),
    given.extend("r1", 600, "e1"),
    given.capture("r1", 60),
    given.reserve("r2", 50),
    given.release("r2"),
    given.reserve("r3", 10, { ttl_seconds: 1 }),
    given.charge("ch1", 30),
    given.refund("rf1", "ch1", 10),
    given.adjust("adj1", -5),
    {
      type: "SetLimit",
      limit_id: "l1",
      terms: { applies_to: { project_id: "p" }, window: "day", amount: 100, threshold_percent: 80 },
    },
    { type: "RemoveLimit", limit_id: "l1" },
  ];
}

describe("command table", () => {
  it("names every command type, and the key a command looks up is the key its event records", () => {
    const seen = new Set<CommandType>();
    const fresh = new given.Ledger();
    for (const command of [...everyCommand(), given.expire("r3")]) {
      if (command.type === "ExpireReservations") fresh.tick(2_000);
      const before = fresh.log.length;
      const decision = fresh.run(command);
      expect(decision.outcome).toBe("accepted");
      const key = COMMANDS[command.type].key(command as never);
      const keyed = fresh.log
        .slice(before)
        .map(eventKey)
        .filter((k) => k !== null);
      // A command with a key records exactly that key; one without records none.
      expect(keyed.map((k) => encodeKey(k))).toEqual(key === null ? [] : [encodeKey(key)]);
      seen.add(command.type);
    }
    expect([...seen].sort()).toEqual(Object.keys(COMMANDS).sort());
    expect(Object.keys(KEY_LOCATIONS).sort()).toEqual(
      ["adjustment", "capture", "charge", "credit", "extend", "open", "refund", "release", "reserve"].sort(),
    );
  });

  it("replays every keyed command, and a different body conflicts", () => {
    const ledger = new given.Ledger().given(...everyCommand());
    for (const command of everyCommand()) {
      if (COMMANDS[command.type].key(command as never) === null) continue;
      expect(ledger.decide(command).outcome).toBe("replayed");
    }
    expect(ledger.decide(given.credit(999, "c1")).outcome).toBe("rejected");
  });

  it("marks only caller commands as batchable", () => {
    const batchable = Object.entries(COMMANDS)
      .filter(([, spec]) => spec.batchable)
      .map(([type]) => type);
    expect(batchable).not.toContain("OpenAccount");
    expect(batchable).not.toContain("ExpireReservations");
  });
});

describe("idempotency keys", () => {
  it("are spelled exactly so: stored keys depend on it, and a new spelling needs a migration", () => {
    // durable-objects/schema.ts respells stored keys from their events; changing encodeKey
    // without adding that migration again would make every stored key unfindable.
    expect(encodeKey({ op: "open" })).toBe('{"op":"open"}');
    expect(encodeKey({ op: "credit", credit_id: "c" })).toBe('{"credit_id":"c","op":"credit"}');
    expect(encodeKey({ op: "extend", reservation_id: "r", extension_id: "e" })).toBe(
      '{"extension_id":"e","op":"extend","reservation_id":"r"}',
    );
    expect(encodeKey({ op: "refund", refund_id: "f" })).toBe('{"op":"refund","refund_id":"f"}');
    expect(encodeKey({ op: "adjustment", adjustment_id: "a" })).toBe('{"adjustment_id":"a","op":"adjustment"}');
  });

  it("never lets two different ids spell the same key, even with ':' inside ids", () => {
    // With "kind:id:id" both of these were "extend:r:1:x": the second extension was taken for a
    // replay of the first, on another reservation, and never applied.
    const a = encodeKey({ op: "extend", reservation_id: "r:1", extension_id: "x" });
    const b = encodeKey({ op: "extend", reservation_id: "r", extension_id: "1:x" });
    expect(a).not.toBe(b);
    expect(encodeKey({ op: "credit", credit_id: "a" })).not.toBe(encodeKey({ op: "refund", refund_id: "a" }));
  });

  it("applies two extensions whose ids only collided when joined with ':'", () => {
    const ledger = new given.Ledger().given(
      given.open(),
      given.credit(1_000),
      given.reserve("r:1", 10),
      given.reserve("r", 10),
    );
    ledger.given(given.extend("r:1", 600, "x"));
    const second = ledger.run(given.extend("r", 700, "1:x"));
    expect(second.outcome).toBe("accepted");
    expect(ledger.state.reservations.get("r")?.ttl_seconds).toBe(700);
    expect(ledger.state.reservations.get("r:1")?.ttl_seconds).toBe(600);
  });
});
