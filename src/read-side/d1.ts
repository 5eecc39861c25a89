/**
 * Every D1 call of the ledger goes through a database from here (`shardsOf`, `controlDb`), so a
 * D1 failure is a `D1Failure` (src/errors.ts) where it happens: the HTTP error handler answers
 * it and counts it for the monitor without reading any message, and code that expects D1 to
 * fail (the consumer's retries, the gauges) catches one type. Statements and batches behave
 * exactly as D1's own; only their rejections are wrapped.
 */
import { D1Failure, LedgerError } from "../errors";

/** The statements handed out, by the real statement each wraps (a batch takes the real ones). */
const realOf = new WeakMap<object, D1PreparedStatement>();

const failure = (error: unknown): never => {
  throw error instanceof LedgerError ? error : new D1Failure(error);
};

function guardStatement(statement: D1PreparedStatement): D1PreparedStatement {
  const guarded = {
    bind: (...values: unknown[]) => {
      try {
        return guardStatement(statement.bind(...values));
      } catch (error) {
        // A value D1 cannot bind (D1_TYPE_ERROR) is refused here, synchronously.
        return failure(error);
      }
    },
    first: (column?: string) => (column === undefined ? statement.first() : statement.first(column)).catch(failure),
    run: () => statement.run().catch(failure),
    all: () => statement.all().catch(failure),
    raw: (options?: { columnNames?: boolean }) =>
      (options?.columnNames === true ? statement.raw({ columnNames: true }) : statement.raw()).catch(failure),
  } as unknown as D1PreparedStatement;
  realOf.set(guarded, statement);
  return guarded;
}

const guardedOf = new WeakMap<D1Database, D1Database>();

/** The database with every failure of its calls as a D1Failure (one wrapper per binding). */
export function guardD1(db: D1Database): D1Database {
  const known = guardedOf.get(db);
  if (known !== undefined) return known;
  const guarded = {
    prepare: (query: string) => guardStatement(db.prepare(query)),
    batch: <T>(statements: D1PreparedStatement[]) =>
      db.batch<T>(statements.map((s) => realOf.get(s) ?? s)).catch(failure),
    exec: (query: string) => db.exec(query).catch(failure),
    dump: () => db.dump().catch(failure),
    // No withSession: a session's batch would be handed guarded statements. Nothing uses one.
  } as unknown as D1Database;
  guardedOf.set(db, guarded);
  return guarded;
}
