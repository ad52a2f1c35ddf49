package store

// ClaimSQL is the claim statement, for tests that look at its plan.
const ClaimSQL = claimSQL
