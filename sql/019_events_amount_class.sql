-- The amount a transaction event carries is the customer's financial information: C2, as the
-- stock tables' amounts are (JR/T 0171-2020). SQL tags already treated it so; now the data
-- catalogue says it too.
ALTER TABLE events COMMENT COLUMN amount 'C2: transaction amount, read from the event''s properties';
