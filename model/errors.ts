// The errors a person can act on, by kind, and the exit code of each kind: the one table the
// nublar command reads (cli/main.ts `main`). An error class says which kind it is by extending
// UserFacingError and setting `kind`; the CLI then prints its message alone (no stack trace)
// and exits with the kind's code. Any other error is a bug, and goes out with its stack.

/** Each kind of user-facing error, and the exit code the nublar command gives it. */
export const EXIT_CODES = {
    /** A problem the user can fix: bad input or config, an unknown name, a site that cannot be planned. */
    user: 1,
    /** What the command needs cannot be reached: a node's agent, the ledger, the event bus. */
    unreachable: 3,
} as const satisfies Record<string, number>;

export type ErrorKind = keyof typeof EXIT_CODES;

/**
 * An error reported to a person as its message, with the exit code of its kind. Subclasses
 * stay ordinary Error classes (`instanceof` works as before): each adds only its kind, e.g.
 * `class ClientError extends UserFacingError { readonly kind = "user"; }`.
 */
export abstract class UserFacingError extends Error {
    abstract readonly kind: ErrorKind;
}
