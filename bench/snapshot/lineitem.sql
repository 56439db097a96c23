-- TPC-H `lineitem` at scale factor 1 (about 6 million rows), generated in
-- SQL with the TPC-H column types and value ranges (dbgen is not packaged in
-- the registries we can reach). 1,500,000 orders with 1 to 7 lines each.
DROP TABLE IF EXISTS lineitem;
CREATE TABLE lineitem (
    l_orderkey      bigint        NOT NULL,
    l_partkey       bigint        NOT NULL,
    l_suppkey       bigint        NOT NULL,
    l_linenumber    integer       NOT NULL,
    l_quantity      numeric(15,2) NOT NULL,
    l_extendedprice numeric(15,2) NOT NULL,
    l_discount      numeric(15,2) NOT NULL,
    l_tax           numeric(15,2) NOT NULL,
    l_returnflag    char(1)       NOT NULL,
    l_linestatus    char(1)       NOT NULL,
    l_shipdate      date          NOT NULL,
    l_commitdate    date          NOT NULL,
    l_receiptdate   date          NOT NULL,
    l_shipinstruct  char(25)      NOT NULL,
    l_shipmode      char(10)      NOT NULL,
    l_comment       varchar(44)   NOT NULL
);
INSERT INTO lineitem
SELECT k, partkey, suppkey, n, q, round(q * price, 2), disc, tax, flag, status,
       ship, ship + commit_days, ship + receipt_days, instruct, mode, comment
FROM (
    SELECT o.k, l.n,
           1 + floor(random() * 200000)::bigint AS partkey,
           1 + floor(random() * 10000)::bigint AS suppkey,
           (1 + floor(random() * 50))::numeric(15,2) AS q,
           (900 + random() * 1100)::numeric AS price,
           round((random() * 0.10)::numeric, 2) AS disc,
           round((random() * 0.08)::numeric, 2) AS tax,
           (ARRAY['R','A','N'])[1 + floor(random() * 3)::int] AS flag,
           (ARRAY['O','F'])[1 + floor(random() * 2)::int] AS status,
           date '1992-01-02' + floor(random() * 2400)::int AS ship,
           floor(random() * 90)::int - 30 AS commit_days,
           1 + floor(random() * 30)::int AS receipt_days,
           (ARRAY['DELIVER IN PERSON','COLLECT COD','NONE','TAKE BACK RETURN'])[1 + floor(random() * 4)::int] AS instruct,
           (ARRAY['REG AIR','AIR','RAIL','SHIP','TRUCK','MAIL','FOB'])[1 + floor(random() * 7)::int] AS mode,
           substr(md5(random()::text) || md5(random()::text), 1, 10 + floor(random() * 34)::int) AS comment
    FROM generate_series(1, 1500000) AS o(k)
    CROSS JOIN LATERAL generate_series(1, 1 + (o.k::bigint * 7919 % 7)::int) AS l(n)
) s;
ALTER TABLE lineitem ADD PRIMARY KEY (l_orderkey, l_linenumber);
VACUUM ANALYZE lineitem;
