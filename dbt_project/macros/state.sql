{#-
  The hooks of int_transaction_state, inside its merge's transaction: merges never overlap, and none runs while a
  slice is built or checked (state_clock).
-#}

{#-
  The merge takes the state's lock exclusively for its transaction (a slice's refresh holds it shared: no merge runs
  while a slice is built, checked and published), then notes its clocks:
  - how far it reads staging: rows carry their landing transaction's start (ingested_at), so every row landed before
    the oldest transaction still open now is visible; the rows of transactions still open are read next time;
  - the time its rows are merged at (`refreshed_at`), taken once the lock is held: later than any slice build that
    ran before it, earlier than any that runs after.
-#}
{% macro state_clock() -%}
    select pg_advisory_xact_lock(hashtext('txmon state'));
    create temp table txmon_state_clock on commit drop as
    select txmon.run_clock() as processed_until, clock_timestamp() as merged_at;
    {{ record_rule_parameters() }};
    {%- if restating() %}
    delete from {{ this }} where {{ partition_filter('event_date', 'region') }};
    {%- endif %}
{%- endmacro %}


{#-
  A full partitioned run restates its slice from staging (`txmon materialize`): the slice's states are derived again
  from the slice's events (and the flagged events of the lifecycle window up to the slice's end, in any region), so a
  state whose event is no longer in staging, or one that drifted, is put right. Otherwise a merge reads only what
  landed since the last one.
-#}
{% macro restating() -%}
    {{ return(is_incremental() and var('partition_date') is not none and var('slice_mode') == 'full') }}
{%- endmacro %}


{#- The columns a transaction's state keeps of its latest event (prefixed with `alias.` when given). -#}
{% macro state_event_columns(alias=none) -%}
    {%- set columns = ['transaction_id', 'account_id', 'counterparty_id', 'amount', 'currency', 'region', 'status',
                       'status_rank', 'event_at', 'event_date', 'kafka_partition', 'kafka_offset'] -%}
    {%- for column in columns -%}
        {{ alias ~ '.' if alias }}{{ column }}{{ ',\n        ' if not loop.last }}
    {%- endfor -%}
{%- endmacro %}


{#- When this merge's rows are merged (state_clock). -#}
{% macro merged_at() -%}
    (select txmon_state_clock.merged_at from txmon_state_clock)
{%- endmacro %}


{#- Where the last merge left off ('-infinity' before the first). -#}
{% macro state_watermark() -%}
    (select coalesce(max(w.processed_until), '-infinity'::timestamptz)
     from intermediate.state_watermark as w where w.model = '{{ this.identifier }}')
{%- endmacro %}


{% macro record_state_watermark() -%}
    insert into intermediate.state_watermark (model, processed_until, built_at)
    select '{{ this.identifier }}', processed_until, clock_timestamp() from txmon_state_clock
    on conflict (model) do update set processed_until = excluded.processed_until, built_at = excluded.built_at
{%- endmacro %}


{#-
  The slices this merge changed: each merged transaction's slice, the one it left when it moved to another day or
  region, and the other days of its account's transactions that its AML typologies' windows reach, around where it is
  (a late transaction completes a group of the day before) and around where it was before this merge when it moved
  or its amount changed (it may have left a group or window there). The windows are the longest and the band the
  widest of any version of the parameters. Each is refreshed next (orchestration reads intermediate.changed_slices).
-#}
{% macro mark_changed_slices() -%}
    insert into intermediate.changed_slices (slice_date, region)
    with {{ typology_bounds() }},

    merged as (

        select state.* from {{ this }} as state
        where state.refreshed_at = {{ merged_at() }}

    ),

    positions as (

        select merged.account_id, merged.region, merged.event_date, merged.event_at, merged.amount, merged.currency
        from merged
        union all
        select
            merged.account_id, merged.previous_region, merged.previous_event_date, merged.previous_event_at,
            merged.previous_amount, merged.previous_currency
        from merged
        where merged.previous_event_date is not null
          and (merged.previous_region, merged.previous_event_at, merged.previous_amount, merged.previous_currency)
              is distinct from (merged.region, merged.event_at, merged.amount, merged.currency)

    ),

    reaching as (

        select
            position.*,
            b.structuring_window_hours,
            b.velocity_window_minutes,
            coalesce({{ may_structure('position', 'b.structuring_min_ratio') }}, false) as may_structure
        from positions as position
        left join rule_bounds as b on b.region = position.region
        left join usd_rate_bounds as bound on bound.currency = position.currency

    )

    select distinct changed.slice_date, changed.region
    from reaching as state
    cross join lateral (
        values (state.event_date, state.region)
        union all
        -- The other days with transactions of its account that its windows reach (a structuring group's before and
        -- after it, a velocity window's after it): their groups may have changed. Looked up (index on account,
        -- region, time) only for a position in structuring's band or within a velocity window of midnight.
        select other.event_date, other.region
        from {{ this }} as other
        where (
            state.may_structure
            or state.event_at + make_interval(mins => state.velocity_window_minutes)
            >= (state.event_date + 1)::timestamp at time zone 'UTC'
        )
        and other.account_id = state.account_id
        and other.region = state.region
        and other.event_date <> state.event_date
        and (
            (
                state.may_structure
                and other.event_at > state.event_at - make_interval(hours => state.structuring_window_hours)
                and other.event_at < state.event_at + make_interval(hours => state.structuring_window_hours)
            )
            or (
                other.event_at >= state.event_at
                and other.event_at < state.event_at + make_interval(mins => state.velocity_window_minutes)
            )
        )
    ) as changed (slice_date, region)
    where changed.slice_date is not null
    on conflict do nothing
{%- endmacro %}


{#-
  After a merge that changed a tenth of the state or more (the first build, a backfill, a large day), before its
  commit: fresh statistics, or the slices' builds and checks that follow at once are planned on a state the planner
  believes small (a nested loop over millions of rows where a hash join was meant). Autovacuum's ANALYZE follows the
  smaller merges.
-#}
{% macro analyze_after_large_merge() -%}
    {%- set relation = this.schema ~ '.' ~ this.identifier -%}
    do $$
    begin
        if (
            select c.reltuples < 0
                or pg_stat_get_xact_tuples_inserted(c.oid) + pg_stat_get_xact_tuples_updated(c.oid)
                    >= 0.1 * c.reltuples
            from pg_class as c where c.oid = '{{ relation }}'::regclass
        ) then
            analyze {{ relation }};
        end if;
    end
    $$
{%- endmacro %}
