/** The contracts of opening, reading and updating an account. */
import { z } from "@hono/zod-openapi";
import {
  CURRENCY_PATTERN,
  LOW_BALANCE_THRESHOLD_MINOR_MAX,
  LOW_BALANCE_THRESHOLD_MINOR_MIN,
} from "../../domain/limits";
import { CreditLimit, Id, Metadata, Minor, Time } from "./common";

export const OpenAccountBody = z
  .strictObject({
    account_id: Id,
    currency: z.string().regex(CURRENCY_PATTERN, "must be three upper-case letters").openapi({ example: "USD" }),
    credit_limit: CreditLimit.optional(),
    metadata: Metadata.optional(),
  })
  .openapi("OpenAccountRequest");

const LowBalanceThreshold = z
  .number()
  .int()
  .min(LOW_BALANCE_THRESHOLD_MINOR_MIN)
  .max(LOW_BALANCE_THRESHOLD_MINOR_MAX)
  .nullable()
  .openapi({
    description:
      "Integer minor units: `account.low_balance` is sent when the spendable balance (balance - reserved + credit_limit) falls below it. null turns it off.",
    example: 1000,
  });

export const UpdateAccountBody = z
  .strictObject({
    credit_limit: CreditLimit.optional(),
    status: z.enum(["active", "frozen"]).optional(),
    low_balance_threshold: LowBalanceThreshold.optional(),
  })
  .refine(
    (b) => b.credit_limit !== undefined || b.status !== undefined || b.low_balance_threshold !== undefined,
    "give credit_limit, status or low_balance_threshold",
  )
  .openapi("UpdateAccountRequest");

export const AccountParams = z.object({ account_id: Id.openapi({ param: { name: "account_id", in: "path" } }) });
export const ReservationParams = AccountParams.extend({
  reservation_id: Id.openapi({ param: { name: "reservation_id", in: "path" } }),
});
/** What every view of an account's balances starts with. */
const BalanceFields = {
  account_id: z.string(),
  currency: z.string(),
  balance: Minor,
  reserved: Minor,
  available: Minor,
};

export const AccountResponse = z
  .object({
    ...BalanceFields,
    credit_limit: Minor,
    status: z.enum(["active", "frozen"]),
    open_reservations: z.number().int(),
    last_seq: z.number().int(),
    head_hash: z.string().openapi({ description: "Hash of the newest event (the head of the hash chain)." }),
    created_at: Time,
    updated_at: Time,
    metadata: Metadata,
    low_balance_threshold: Minor.nullable().openapi({ description: "null: no low-balance webhook." }),
  })
  .openapi("Account");

export const Balances = z
  .object({
    ...BalanceFields,
    last_seq: z.number().int(),
    updated_at: Time,
  })
  .openapi("Balances", { description: "The account's balances right after the operation." });
