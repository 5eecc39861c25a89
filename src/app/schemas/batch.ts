/** The contract of a batch: up to BATCH_OPERATIONS_MAX single-call bodies, each with its `op`. */
import { z } from "@hono/zod-openapi";
import { BATCH_OPERATIONS_MAX } from "../../domain/limits";
import { Id } from "./common";
import {
  CaptureFields,
  ChargeFields,
  CreditFields,
  captureRules,
  ExtendFields,
  RefundFields,
  ReleaseFields,
  ReserveFields,
  reserveRules,
} from "./money";

/** A batch body may be this large (1,000 operations do not fit the single-call limit). */
export const BATCH_BODY_BYTES_MAX = 1_048_576;

const ReservationRef = { reservation_id: Id };
export const BatchOperation = z
  .union([
    CreditFields.extend({ op: z.literal("credit") }),
    reserveRules(ReserveFields.extend({ op: z.literal("reserve") })),
    captureRules(CaptureFields.extend({ op: z.literal("capture"), ...ReservationRef })),
    ReleaseFields.extend({ op: z.literal("release"), ...ReservationRef }),
    ExtendFields.extend({ op: z.literal("extend"), ...ReservationRef }),
    ChargeFields.extend({ op: z.literal("charge") }),
    RefundFields.extend({ op: z.literal("refund") }),
  ])
  .openapi("BatchOperation", {
    description: "One operation: `op` and the body of the single call (plus reservation_id).",
  });

export const BatchBody = z
  .strictObject({
    operations: z.array(BatchOperation).min(1).max(BATCH_OPERATIONS_MAX),
    atomic: z.boolean().optional().openapi({ description: "Any rejection commits nothing. Default false." }),
  })
  .openapi("BatchRequest");

export const BatchResultSchema = z
  .object({
    committed: z.boolean(),
    results: z.array(z.object({ status: z.number().int(), replayed: z.boolean().optional(), body: z.unknown() })),
  })
  .openapi("BatchResult");
