/** The contracts of opening, reading and updating an account. */
import { z } from "@hono/zod-openapi";
import {
  CURRENCY_PATTERN,
  LOTS_PAGE_LIMIT_DEFAULT,
  LOTS_PAGE_LIMIT_MAX,
  LOW_BALANCE_THRESHOLD_MINOR_MAX,
  LOW_BALANCE_THRESHOLD_MINOR_MIN,
} from "../../domain/limits";
import { LOT_KINDS } from "../../domain/lots";
import { LOT_STATUSES, type LotStatus } from "../../domain/views";
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
    balance_by_kind: z.object({ paid: Minor, promotional: Minor }).openapi({
      description: "Credit left in lots of each kind (held parts included): balance = paid + promotional - debt.",
    }),
    debt: Minor.openapi({
      description: "What was spent on the credit limit beyond every lot; the next credit pays it first.",
    }),
  })
  .openapi("Account");

export const LotsQuery = z.strictObject({
  status: z.enum(LOT_STATUSES as [LotStatus, ...LotStatus[]]).optional(),
  limit: z.coerce.number().int().min(1).max(LOTS_PAGE_LIMIT_MAX).default(LOTS_PAGE_LIMIT_DEFAULT),
  cursor: z.string().max(512).optional(),
});

export const LotSchema = z
  .object({
    lot_id: z.string(),
    kind: z.enum(LOT_KINDS),
    priority: z.number().int(),
    amount: Minor.openapi({ description: "Granted (a refund's new lot: what it got back)." }),
    remaining: Minor.openapi({ description: "Not consumed, not expired; includes what open holds earmark." }),
    held: Minor.openapi({ description: "The part of remaining that open holds earmark." }),
    expired_amount: Minor.openapi({ description: "What expired unused (breakage)." }),
    expires_at: Time.nullable(),
    created_at: Time,
    status: z.enum(LOT_STATUSES as [LotStatus, ...LotStatus[]]),
  })
  .openapi("Lot");

export const LotsPage = z.object({ data: z.array(LotSchema), next_cursor: z.string().nullable() }).openapi("LotsPage");

export const Balances = z
  .object({
    ...BalanceFields,
    last_seq: z.number().int(),
    updated_at: Time,
  })
  .openapi("Balances", { description: "The account's balances right after the operation." });
