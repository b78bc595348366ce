-- Loan numbers of erased customers, as keyed digests: the erasure deletes their loans, and the
-- bank's next full schedule file still lists them. The import counts such rows as the erased
-- customer's instead of refusing the file for a loan it does not know.
ALTER TABLE erasure_tombstones MODIFY COLUMN id_kind Enum8('customer_no' = 1, 'anonymous_id' = 2, 'device_id' = 3, 'user_id' = 4, 'loan_no' = 5);
