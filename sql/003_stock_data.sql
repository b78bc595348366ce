-- The bank's stock data ("存量数据"), imported in bulk and upserted by natural key.
CREATE TABLE IF NOT EXISTS accounts
(
    tenant_id     UInt16,
    customer_key  UInt32,
    account_no    String COMMENT 'C2',
    kind          Enum8('current' = 1, 'savings' = 2, 'time_deposit' = 3, 'wealth' = 4, 'pension' = 5, 'social_security' = 6),
    currency      LowCardinality(String) DEFAULT 'CNY',
    balance       Decimal(18, 2) COMMENT 'C2',
    opened_at     Date32 COMMENT 'C1',
    status        Enum8('active' = 1, 'dormant' = 2, 'closed' = 3),
    updated_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (tenant_id, customer_key, account_no);

CREATE TABLE IF NOT EXISTS loans
(
    tenant_id      UInt16,
    customer_key   UInt32,
    loan_no        String COMMENT 'C2',
    product_id     String,
    principal      Decimal(18, 2) COMMENT 'C2',
    outstanding    Decimal(18, 2) COMMENT 'C2',
    annual_rate    Float64,
    start_date     Date32,
    maturity_date  Date32,
    status         Enum8('active' = 1, 'overdue' = 2, 'closed' = 3),
    overdue_days   UInt16 DEFAULT 0,
    updated_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (tenant_id, customer_key, loan_no);

CREATE TABLE IF NOT EXISTS loan_schedules
(
    tenant_id       UInt16,
    customer_key    UInt32,
    loan_no         String,
    installment_no  UInt16,
    due_date        Date32,
    amount_due      Decimal(18, 2) COMMENT 'C2',
    amount_paid     Decimal(18, 2) COMMENT 'C2',
    paid_at         Nullable(DateTime64(3, 'UTC')),
    status          Enum8('due' = 1, 'paid' = 2, 'overdue' = 3),
    updated_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (tenant_id, customer_key, loan_no, installment_no);

CREATE TABLE IF NOT EXISTS bills
(
    tenant_id          UInt16,
    customer_key       UInt32,
    bill_no            String,
    biller             Enum8('electricity' = 1, 'water' = 2, 'gas' = 3, 'telecom' = 4, 'tv' = 5,
                             'social_insurance' = 6, 'medical_insurance' = 7, 'property' = 8),
    amount             Decimal(18, 2) COMMENT 'C2',
    due_date           Date32,
    status             Enum8('unpaid' = 1, 'paid' = 2, 'overdue' = 3),
    paid_at            Nullable(DateTime64(3, 'UTC')),
    payer_key          UInt32 DEFAULT 0 COMMENT 'customer who paid when not the bill owner (family agent)',
    updated_at         DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (tenant_id, customer_key, bill_no);

-- Each member bank's catalogue of products and services ("一行一面").
CREATE TABLE IF NOT EXISTS products
(
    tenant_id    UInt16,
    product_id   String,
    kind         Enum8('deposit' = 1, 'wealth' = 2, 'loan' = 3, 'insurance' = 4, 'pension' = 5,
                       'government' = 6, 'payment' = 7, 'agri' = 8),
    name_zh      String,
    name_en      String,
    category     LowCardinality(String),
    risk_level   UInt8 DEFAULT 0 COMMENT '0 none .. 5 highest (wealth products)',
    min_amount   Decimal(18, 2) DEFAULT 0,
    annual_rate  Float64 DEFAULT 0,
    valid_from   Date32,
    valid_to     Date32,
    attributes   Map(String, String),
    status       Enum8('active' = 1, 'inactive' = 2),
    updated_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (tenant_id, product_id);
