-- Fresh statistics for the staging days a whole-slice build reads. A day's partition filled since its last ANALYZE
-- (late events for a closed day, a new day's first hours) is otherwise planned as nearly empty until autovacuum
-- gets to it: the latest-state model then joined each of a late day's 12,000 transactions to every event of the days
-- after it (a nested loop over 1.5 billion pairs, 75-97 s) instead of hashing them (under a second). The refresh
-- calls this before a whole-slice build, outside the model's transaction (ANALYZE holds its lock until commit), for
-- the days of the slice's lifecycle window; a day whose statistics still describe it is left alone. ANALYZE needs
-- the table's owner, hence SECURITY DEFINER, for the transformation role alone.
CREATE FUNCTION txmon.analyze_stale_staging(first_day date, last_day date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    day date;
    part regclass;
    analysed integer := 0;
BEGIN
    FOR day IN SELECT d::date FROM generate_series(first_day, last_day, interval '1 day') AS d LOOP
        part := to_regclass(format('staging.%I', format('transactions_%s', to_char(day, 'YYYYMMDD'))));
        CONTINUE WHEN part IS NULL;
        -- Rows landed and never analysed, or more than a fifth of it (at least 1,000 rows) changed since.
        IF (SELECT (c.reltuples < 0 AND pg_stat_get_mod_since_analyze(c.oid) > 0)
                   OR pg_stat_get_mod_since_analyze(c.oid) > greatest(1000, 0.2 * c.reltuples)
            FROM pg_class AS c WHERE c.oid = part) THEN
            EXECUTE format('ANALYZE %s', part);
            analysed := analysed + 1;
        END IF;
    END LOOP;
    RETURN analysed;
END
$$;
REVOKE ALL ON FUNCTION txmon.analyze_stale_staging(date, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION txmon.analyze_stale_staging(date, date) TO txmon_transform;
