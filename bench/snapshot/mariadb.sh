#!/usr/bin/env bash
# Copies lineitem from PostgreSQL (bench/snapshot/lineitem.sql) into MariaDB
# database pulse_bench, for `python bench/snapshot/bench.py --mysql`.
set -euo pipefail
csv=$(mktemp --suffix=.csv)
trap 'rm -f "$csv"' EXIT
psql "${BENCH_PG_URL:-postgresql://postgres@127.0.0.1:5432/pulse_bench}" -c "\copy lineitem TO '$csv' WITH (FORMAT csv)"
mysql -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS pulse_bench; CREATE DATABASE pulse_bench; USE pulse_bench;
CREATE TABLE lineitem (l_orderkey BIGINT NOT NULL, l_partkey BIGINT NOT NULL, l_suppkey BIGINT NOT NULL, l_linenumber INT NOT NULL,
 l_quantity DECIMAL(15,2) NOT NULL, l_extendedprice DECIMAL(15,2) NOT NULL, l_discount DECIMAL(15,2) NOT NULL, l_tax DECIMAL(15,2) NOT NULL,
 l_returnflag CHAR(1) NOT NULL, l_linestatus CHAR(1) NOT NULL, l_shipdate DATE NOT NULL, l_commitdate DATE NOT NULL, l_receiptdate DATE NOT NULL,
 l_shipinstruct CHAR(25) NOT NULL, l_shipmode CHAR(10) NOT NULL, l_comment VARCHAR(44) NOT NULL, PRIMARY KEY (l_orderkey, l_linenumber)) ENGINE=InnoDB;"
mysql -h127.0.0.1 -uroot --local-infile=1 pulse_bench -e "SET unique_checks=0;
LOAD DATA LOCAL INFILE '$csv' INTO TABLE lineitem FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"'; ANALYZE TABLE lineitem;"
