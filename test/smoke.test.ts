import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";

describe("smoke", () => {
  it("opens an account and reads it", async () => {
    const auth = { authorization: `Bearer ${env.ADMIN_API_KEY}`, "content-type": "application/json" };
    const open = await exports.default.fetch("http://ledger/v1/accounts", {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ account_id: "acct_1", currency: "USD" }),
    });
    expect(open.status).toBe(201);
    const read = await exports.default.fetch("http://ledger/v1/accounts/acct_1", { headers: auth });
    expect(await read.json()).toMatchObject({ account_id: "acct_1", balance: 0 });
  });
});
