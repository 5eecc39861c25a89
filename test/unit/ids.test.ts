import { decodeTime, isValid } from "ulid";
import { describe, expect, it } from "vitest";
import { monotonicUlids, newUlid } from "../../src/ids";

describe("ids from the pooled random source", () => {
  it("are valid, distinct ULIDs across many pool refills", () => {
    // 1,000 ids draw 16,000 random bytes: the 1,024-byte pool is refilled 16 times.
    const ids = Array.from({ length: 1000 }, () => newUlid());
    expect(ids.every((id) => isValid(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    // The random part is not constant: all 32 alphabet characters appear in its first position.
    expect(new Set(ids.map((id) => id[10])).size).toBe(32);
  });

  it("increase strictly within one millisecond and carry the time they were given", () => {
    const next = monotonicUlids();
    const at = Date.parse("2026-11-29T10:00:00.000Z");
    const ids = Array.from({ length: 500 }, () => next(at));
    expect(ids.every((id, i) => i === 0 || id > (ids[i - 1] as string))).toBe(true);
    expect(ids.every((id) => decodeTime(id) === at)).toBe(true);
  });
});
