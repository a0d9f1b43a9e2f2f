{#-
  The slice a partitioned run rebuilds: one region x UTC day, as a half-open [start, end) window
  on a timestamptz column, so an event at exactly midnight belongs to one day only.
  Without partition vars (a plain `dbt build`) every slice is rebuilt.
-#}
{% macro in_partition(time_column, region_column) -%}
    {%- set day = var('partition_date') -%}
    {%- set region = var('partition_region') -%}
    {%- if (day is none) != (region is none) -%}
        {{ exceptions.raise_compiler_error("set both partition_date and partition_region, or neither") }}
    {%- endif -%}
    {%- if day is none -%}
        true
    {%- else -%}
        {{ time_column }} >= ('{{ day }}'::date)::timestamp at time zone 'UTC'
        and {{ time_column }} < ('{{ day }}'::date + 1)::timestamp at time zone 'UTC'
        and {{ region_column }} = '{{ region }}'
    {%- endif -%}
{%- endmacro %}


{#- A data test's `where` for the slice being built (every slice without partition vars). -#}
{% macro partition_filter(date_column, region_column) -%}
    {%- if var('partition_date') is none -%}
        true
    {%- else -%}
        {{ date_column }} = '{{ var('partition_date') }}'::date and {{ region_column }} = '{{ var('partition_region') }}'
    {%- endif -%}
{%- endmacro %}


{#- True in a run that only refreshes the transactions with new events (slice_mode new_data). -#}
{% macro new_data_run() -%}
    {{ return(is_incremental() and var('partition_date') is not none and var('slice_mode') == 'new_data') }}
{%- endmacro %}


{#-
  The pre-hook of every partitioned model, inside the model's transaction:
  - note in txmon_run_clock how far this run sees the slice: staging rows carry their landing
    transaction's start (ingested_at = now()), so every row landed before the oldest transaction
    still open now, or before this one, is visible to the statements that follow; rows of the
    transactions still open land at or after that instant and are picked up by the next run;
  - full: empty the slice about to be rebuilt;
  - new_data (by_transaction models only): note in txmon_touched the slice's transactions with an
    event landed since this model last processed the slice anywhere in the lifecycle window around
    it (a later event on another day supersedes a latest state here; an earlier flagged one flags
    it), plus those a neighbour marked, and delete just those. So a slice's rebuild reflects every
    event landed before its run clock, whatever order the slices are refreshed in, and its checks
    (bounded by the same clock) never judge it stale.
  The advisory lock makes two runs of the same slice take turns (without it both would delete,
  then both insert).
-#}
{% macro delete_partition(date_column, region_column, by_transaction=true) -%}
    {%- if var('partition_date') is not none %}
        create temp table txmon_run_clock on commit drop as select txmon.run_clock() as processed_until;
    {%- endif -%}
    {%- if is_incremental() and var('partition_date') is not none %}
        select pg_advisory_xact_lock(hashtext('{{ this }}|{{ var('partition_date') }}|{{ var('partition_region') }}'));
        {%- if by_transaction and new_data_run() %}
        create temp table txmon_touched (transaction_id text primary key, landed_here boolean not null) on commit drop;
        insert into txmon_touched
            select recent.transaction_id, bool_or({{ in_partition('recent.event_at', 'recent.region') }})
            from {{ ref('stg_transactions') }} as recent
            where recent.ingested_at >= (
                select coalesce(max(processed_until), '-infinity'::timestamptz)
                from intermediate.slice_watermarks
                where model = '{{ this.identifier }}'
                  and slice_date = '{{ var('partition_date') }}'::date
                  and region = '{{ var('partition_region') }}')
              and recent.event_at >= ('{{ var('partition_date') }}'::date - {{ var('lifecycle_window_days') }})::timestamp at time zone 'UTC'
              and recent.event_at < ('{{ var('partition_date') }}'::date + 1 + {{ var('lifecycle_window_days') }})::timestamp at time zone 'UTC'
              and exists (
                select 1 from {{ ref('stg_transactions') }} as here
                where here.transaction_id = recent.transaction_id and {{ in_partition('here.event_at', 'here.region') }})
            group by recent.transaction_id;
        with marked as (
            delete from intermediate.slice_dirty
            where model = '{{ this.identifier }}' and {{ dirty_of_slice() }}
            returning transaction_id
        )
        insert into txmon_touched select distinct transaction_id, false from marked on conflict do nothing;
        analyze txmon_touched;
        delete from {{ this }}
        where {{ date_column }} = '{{ var('partition_date') }}'::date
          and {{ region_column }} = '{{ var('partition_region') }}'
          and transaction_id in (select transaction_id from txmon_touched)
        {%- else %}
        {%- if by_transaction %}
        delete from intermediate.slice_dirty where model = '{{ this.identifier }}' and {{ dirty_of_slice() }};
        {%- endif %}
        delete from {{ this }}
        where {{ date_column }} = '{{ var('partition_date') }}'::date
          and {{ region_column }} = '{{ var('partition_region') }}'
        {%- endif -%}
    {%- elif is_incremental() -%}
        select pg_advisory_xact_lock(hashtext('{{ this }}'));
        delete from {{ this }}
    {%- elif var('partition_date') is none -%}
        select 1
    {%- endif -%}
{%- endmacro %}


{#-
  The rows of a partitioned model's input for this run: the whole slice, or in a new_data run only
  the transactions its pre-hook noted, each looked up by key (an index probe: the OFFSET 0 keeps the
  planner from turning the lookups back into a scan of the whole day).
-#}
{% macro slice_rows(relation, slice_filter) -%}
    {%- if new_data_run() -%}
    select rows.*
    from txmon_touched as touched
    cross join lateral (
        select * from {{ relation }}
        where transaction_id = touched.transaction_id and {{ slice_filter }}
        offset 0
    ) as rows
    {%- else -%}
    select * from {{ relation }} where {{ slice_filter }}
    {%- endif -%}
{%- endmacro %}


{#-
  The post-hook of every partitioned model: the slice is processed up to its pre-hook's run clock,
  or up to its upstream model's watermark when that is earlier (what it read reflects no more).
-#}
{% macro record_watermark(upstream=none) -%}
    {%- if var('partition_date') is not none -%}
        insert into intermediate.slice_watermarks (model, slice_date, region, processed_until, built_at)
        select '{{ this.identifier }}', '{{ var('partition_date') }}'::date, '{{ var('partition_region') }}',
        {%- if upstream %}
               least(processed_until, coalesce((
                   select w.processed_until from intermediate.slice_watermarks as w
                   where w.model = '{{ upstream }}' and w.slice_date = '{{ var('partition_date') }}'::date
                     and w.region = '{{ var('partition_region') }}'), processed_until))
        {%- else %}
               processed_until
        {%- endif %}
               , clock_timestamp()
        from txmon_run_clock
        on conflict (model, slice_date, region) do update
            set processed_until = excluded.processed_until, built_at = excluded.built_at
    {%- else -%}
        delete from intermediate.slice_watermarks where model = '{{ this.identifier }}'
    {%- endif -%}
{%- endmacro %}


{#-
  A model's slice index, named after its columns, created when missing. Checked in the catalog
  first: CREATE INDEX, even IF NOT EXISTS, takes a lock that conflicts with the inserts of
  concurrent runs of other slices.
-#}
{% macro create_slice_index(columns) -%}
    {%- if not execute -%}
        {{ return('select 1') }}
    {%- endif -%}
    {%- set name = this.identifier ~ '__' ~ (columns | replace(', ', '__')) -%}
    {%- set found = run_query(
        "select 1 from pg_indexes where schemaname = '" ~ this.schema ~ "' and indexname = '" ~ name ~ "'") -%}
    {%- if found.rows | length == 0 -%}
        create index if not exists {{ name }} on {{ this }} ({{ columns }})
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}


{#-
  After a full rebuild of a slice (a first build, a backfill, `txmon materialize`), before its commit: fresh
  statistics for the table. Its rows were just inserted, and autovacuum analyses only later: the tests and checks
  that follow at once would be planned on statistics that do not know the slice (a nested loop over sequential scans
  where an index probe was meant: seconds become minutes; a region missing from the statistics did that to a
  backfill's latest-state model, 4 s -> 114 s). When this build wrote a tenth of the table or more (or the table was
  never analysed), a full ANALYZE; otherwise a 3,000-row sample (statistics target 10: 45 ms instead of 0.6 s on a
  9.5M-row table), enough to know the slice's day and region; autovacuum's own ANALYZE refines them later.
-#}
{% macro analyze_after_full_build() -%}
    {%- if var('partition_date') is not none and not new_data_run() -%}
        {%- set relation = this.schema ~ '.' ~ this.identifier -%}
        do $$
        begin
            if (
                select c.reltuples >= 0 and pg_stat_get_xact_tuples_inserted(c.oid) < 0.1 * c.reltuples
                from pg_class as c where c.oid = '{{ relation }}'::regclass
            ) then
                perform set_config('default_statistics_target', '10', true);
            end if;
            analyze {{ relation }};
        end
        $$
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}


{%- macro dirty_of_slice() -%}
    slice_date = '{{ var('partition_date') }}'::date and region = '{{ var('partition_region') }}'
{%- endmacro %}


{#-
  The post-hook of int_transactions_latest: a transaction with events in this slice whose latest
  state sits in another built slice of the same region within the lifecycle window (a later event
  supersedes it, an earlier flagged event makes it flagged) is marked dirty there, for each model
  that keeps a row per transaction; that slice's next refresh rebuilds it (delete_partition above).
  Only events that landed after that slice was built can have changed it: a new_data run looks at
  the transactions that just landed here, a full run at those landed here since each neighbour's
  watermark (none, for a backfill in date order). Those are read once (txmon_changed), then looked
  up in each built neighbour by one statement planned on that neighbour's own values: one probe of
  its (event_date, region, transaction_id) index per changed transaction when the neighbour holds
  more than PROBE_RATIO times as many rows (a 10M-event day next to a backfilled one: 156,000
  probes, 1.0 s, where the planner's hash join read all 6.25M rows, 3.9 s), else one hash join.
-#}
{% macro mark_neighbours(by_transaction_models=('int_transactions_latest', 'suspicious_activity')) -%}
    {%- if var('partition_date') is none -%}
        {{ return('select 1') }}
    {%- endif -%}
    {%- set day = "'" ~ var('partition_date') ~ "'::date" -%}
    {%- set region = var('partition_region') -%}
    {%- set built -%}
        from intermediate.slice_watermarks
        where model = '{{ this.identifier }}' and region = '{{ region }}'
          and slice_date between {{ day }} - {{ var('lifecycle_window_days') }} and {{ day }} + {{ var('lifecycle_window_days') }}
          and slice_date <> {{ day }}
    {%- endset -%}
    {%- set marked -%}
        insert into intermediate.slice_dirty (model, slice_date, region, transaction_id)
        select model.name, neighbour.event_date, neighbour.region, neighbour.transaction_id
        from txmon_changed as changed
        {join}
        cross join (values {% for m in by_transaction_models %}(''{{ m }}''){{ ", " if not loop.last }}{% endfor %}) as model (name)
        where changed.landed >= %L
        on conflict do nothing
    {%- endset -%}
    do $mark$
    declare
        probe_ratio constant integer := 10;  -- PROBE_RATIO: a probe costs about as much as hashing 10 rows
        neighbour record;
        changed_rows bigint;
        neighbour_rows float8;
        plan json;
    begin
        if not exists (select 1 {{ built }}) then
            return;
        end if;
        create temp table txmon_changed on commit drop as
        {%- if new_data_run() %}
            select transaction_id, 'infinity'::timestamptz as landed from txmon_touched where landed_here;
        {%- else %}
            select transaction_id, max(ingested_at) as landed
            from {{ ref('stg_transactions') }}
            where {{ in_partition('event_at', 'region') }}
              and ingested_at >= (select min(processed_until) {{ built }})
            group by transaction_id;
        {%- endif %}
        select count(*) into changed_rows from txmon_changed;
        if changed_rows = 0 then
            return;
        end if;
        analyze txmon_changed;
        for neighbour in select slice_date, processed_until {{ built }} loop
            execute format(
                'explain (format json) select 1 from {{ this }} where event_date = %L and region = %L',
                neighbour.slice_date, '{{ region }}'
            ) into plan;
            neighbour_rows := (plan -> 0 -> 'Plan' ->> 'Plan Rows')::float8;
            if changed_rows * probe_ratio < neighbour_rows then
                execute format(
                    '{{ marked | replace("{join}", "cross join lateral (select event_date, region, transaction_id from " ~ this ~ " where event_date = %L and region = %L and transaction_id = changed.transaction_id offset 0) as neighbour") }}',
                    neighbour.slice_date, '{{ region }}', neighbour.processed_until
                );
            else
                execute format(
                    '{{ marked | replace("{join}", "join " ~ this ~ " as neighbour on neighbour.transaction_id = changed.transaction_id and neighbour.event_date = %L and neighbour.region = %L") }}',
                    neighbour.slice_date, '{{ region }}', neighbour.processed_until
                );
            end if;
        end loop;
    end
    $mark$
{%- endmacro %}
