/**
 * The open-reservation capacity limit, in a file of its own: an account with 10,000 open holds
 * makes the after-each replay of every account in the file expensive for unrelated tests.
 */
import { runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import type { AccountDurableObject } from "../../durable-objects/account";
import { OPEN_RESERVATIONS_MAX, TTL_SECONDS_DEFAULT } from "../../src/domain/limits";
import { account, api, expectEveryAccountConsistent, openAccount, stub } from "../helpers";

afterEach(expectEveryAccountConsistent);

describe("capacity", () => {
  it("refuses a reservation beyond OPEN_RESERVATIONS_MAX open holds (422)", async () => {
    const id = await openAccount(OPEN_RESERVATIONS_MAX + 1);
    // Fill the account from inside the object: 10,000 HTTP round trips would only test the network.
    await runInDurableObject(stub(id), async (instance: AccountDurableObject) => {
      for (let i = 0; i < OPEN_RESERVATIONS_MAX; i++) {
        const result = await instance.execute({
          type: "ReserveFunds",
          reservation_id: `hold_${i}`,
          amount: 1,
          ttl_seconds: TTL_SECONDS_DEFAULT,
          on_expiry: "release",
          context: {},
          metadata: {},
        });
        expect(result.ok).toBe(true);
      }
    });
    const refused = await api("POST", `/v1/accounts/${id}/reservations`, { reservation_id: "one_more", amount: 1 });
    expect(refused.status).toBe(422);
    expect(refused.body.code).toBe("too_many_open_reservations");
    expect(refused.body.open_reservations_max).toBe(OPEN_RESERVATIONS_MAX);
    expect(await account(id)).toMatchObject({ open_reservations: OPEN_RESERVATIONS_MAX, available: 1 });
  });
});
