{#-
  Region x UTC-day slices. A partitioned run (vars partition_date and partition_region) rebuilds one slice of the
  marts from int_transaction_state: the whole slice ("full"), or in a "new_data" run only the transactions whose state
  changed since the slice's watermark. Without partition vars (a plain `dbt build`) every slice is rebuilt.
  Orchestration holds the state's lock in shared mode around a slice's build and checks (txmon/quality/refresh.py), so
  no merge of the state runs meanwhile: the build's transaction start is its watermark.
-#}

{#- A half-open [start, end) UTC day on a timestamptz column, and the region: an event at midnight is in one day. -#}
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


{#- The slice on a date column and a region column (every slice without partition vars). -#}
{% macro partition_filter(date_column, region_column) -%}
    {%- if var('partition_date') is none -%}
        true
    {%- else -%}
        {{ date_column }} = '{{ var('partition_date') }}'::date and {{ region_column }} = '{{ var('partition_region') }}'
    {%- endif -%}
{%- endmacro %}


{#- True in a run that only refreshes the transactions whose state changed (slice_mode new_data). -#}
{% macro new_data_run() -%}
    {{ return(is_incremental() and var('partition_date') is not none and var('slice_mode') == 'new_data') }}
{%- endmacro %}


{#- Where the slice's last build left off: state rows refreshed since then are new to it. -#}
{% macro slice_watermark() -%}
    (select w.processed_until from intermediate.slice_watermarks as w
     where w.model = '{{ this.identifier }}' and w.slice_date = '{{ var('partition_date') }}'::date
       and w.region = '{{ var('partition_region') }}')
{%- endmacro %}


{#-
  The state rows a slice's build reads: those of the slice, in a new_data run only those refreshed since its watermark
  and, `by_account`, the others of the accounts in txmon_rejudged_accounts (delete_slice's temporary table).
-#}
{% macro state_of_slice(by_account=false) -%}
    select * from {{ ref('int_transaction_state') }} as state
    where {{ partition_filter('state.event_date', 'state.region') }}
    {%- if new_data_run() %}
      and state.refreshed_at >= {{ slice_watermark() }}
    {%- if by_account %}
    union all
    select state.* from txmon_rejudged_accounts as rejudged
    inner join {{ ref('int_transaction_state') }} as state
        on state.account_id = rejudged.account_id and state.region = rejudged.region
    where {{ partition_filter('state.event_date', 'state.region') }}
      and state.refreshed_at < {{ slice_watermark() }}
    {%- endif %}
    {%- endif %}
{%- endmacro %}


{#-
  The accounts (account_id, region) of the slice's region whose transactions of the slice a new_data build judges
  again besides the changed ones: of the states changed since the slice's watermark within the days the AML
  typologies' windows reach, those of typology_accounts (a group or window may have gained or moved one), and the
  accounts with such a change (where it is, or where it was before it moved) of the slice's rows that fired a
  typology (a group or window may have lost one). The other accounts' unchanged transactions fire neither rule, before
  or after.
-#}
{% macro rejudged_accounts() -%}
    {%- set region, day = var('partition_region'), var('partition_date') -%}
    with {{ typology_bounds() }},

    changed as (

        select changed.* from {{ ref('int_transaction_state') }} as changed
        where changed.refreshed_at >= {{ slice_watermark() }}
          and changed.region = '{{ region }}'
          and changed.event_date between '{{ day }}'::date - {{ rule_reach_days() }}
                                     and '{{ day }}'::date + {{ rule_reach_days() }}

    )

    {{ typology_accounts('changed') }}
    union
    select slice.account_id, slice.region from {{ this }} as slice
    where {{ partition_filter('slice.event_date', 'slice.region') }}
      and slice.evidence is not null
      and exists (
        select 1 from {{ ref('int_transaction_state') }} as changed
        where changed.account_id = slice.account_id
          and changed.refreshed_at >= {{ slice_watermark() }}
          and (
            (changed.region = '{{ region }}'
             and changed.event_date between '{{ day }}'::date - {{ rule_reach_days() }}
                                        and '{{ day }}'::date + {{ rule_reach_days() }})
            or (changed.previous_region = '{{ region }}'
                and changed.previous_event_date between '{{ day }}'::date - {{ rule_reach_days() }}
                                                    and '{{ day }}'::date + {{ rule_reach_days() }})
          )
      )
{%- endmacro %}


{#-
  The pre-hook of a slice model: empty what is about to be rebuilt. The whole slice; in a new_data run of a model with a
  row per transaction, the rows whose transaction's state changed since the slice's watermark (it may have moved to
  another slice, or stopped matching), and `by_account` those of the accounts of rejudged_accounts, kept for the build
  in a temporary table (txmon_rejudged_accounts). The advisory lock makes two builds of one slice take turns.
-#}
{% macro delete_slice(date_column, by_transaction=true, by_account=false) -%}
    {%- if var('partition_date') is not none and is_incremental() %}
        select pg_advisory_xact_lock(hashtext('{{ this }}|{{ var('partition_date') }}|{{ var('partition_region') }}'));
        {%- if by_account and new_data_run() %}
        create temporary table txmon_rejudged_accounts on commit drop as {{ rejudged_accounts() }};
        analyze txmon_rejudged_accounts;
        {%- endif %}
        delete from {{ this }} as slice
        where {{ partition_filter('slice.' ~ date_column, 'slice.region') }}
        {%- if by_transaction and new_data_run() %}
          and (exists (
            select 1 from {{ ref('int_transaction_state') }} as state
            where state.transaction_id = slice.transaction_id and state.refreshed_at >= {{ slice_watermark() }}
          ){% if by_account %} or (slice.account_id, slice.region) in (
            select rejudged.account_id, rejudged.region from txmon_rejudged_accounts as rejudged
          ){% endif %})
        {%- endif %}
    {%- elif is_incremental() %}
        select pg_advisory_xact_lock(hashtext('{{ this }}'));
        delete from {{ this }}
    {%- else %}
        select 1
    {%- endif %}
{%- endmacro %}


{#- The post-hook of a slice model: the slice reflects every state change before this build's start. -#}
{% macro record_watermark() -%}
    {%- if var('partition_date') is not none -%}
        insert into intermediate.slice_watermarks (model, slice_date, region, processed_until, built_at)
        values ('{{ this.identifier }}', '{{ var('partition_date') }}'::date, '{{ var('partition_region') }}',
                now(), clock_timestamp())
        on conflict (model, slice_date, region) do update
            set processed_until = excluded.processed_until, built_at = excluded.built_at
    {%- else -%}
        delete from intermediate.slice_watermarks where model = '{{ this.identifier }}'
    {%- endif -%}
{%- endmacro %}


{#-
  An index named after its columns, created when missing. Checked in the catalog first: CREATE INDEX, even IF NOT
  EXISTS, takes a lock that conflicts with the inserts of concurrent builds of other slices.
  A non-unique index is kept without deduplication: every row one merge or build writes carries the same
  `refreshed_at`, and merging equal keys into posting lists rewrites a leaf page each time it fills (inserting a
  10,000,000-event day's states through these indexes takes more than twice as long with it).
  An index created before that is altered once (a later insert is not deduplicated; what is stored stays as it is).
-#}
{% macro create_index(columns, unique=false) -%}
    {%- if not execute -%}
        {{ return('select 1') }}
    {%- endif -%}
    {%- set name = this.identifier ~ '__' ~ (columns | replace(', ', '__')) -%}
    {%- set found = run_query(
        "select coalesce('deduplicate_items=off' = any(c.reloptions), false) from pg_class as c"
        ~ " join pg_namespace as n on n.oid = c.relnamespace"
        ~ " where n.nspname = '" ~ this.schema ~ "' and c.relname = '" ~ name ~ "'") -%}
    {%- if found.rows | length == 0 -%}
        create {{ 'unique ' if unique }}index if not exists {{ name }} on {{ this }} ({{ columns }})
        {%- if not unique %} with (deduplicate_items = off){% endif %}
    {%- elif not unique and not found.rows[0][0] -%}
        alter index {{ this.schema }}.{{ name }} set (deduplicate_items = off)
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}


{#-
  After a full rebuild of a slice, before its commit: fresh statistics, so that the checks which follow at once are not
  planned on statistics that do not know the slice. A 3,000-row sample when the build wrote under a tenth of the table
  (enough to know the slice's day and region), a full ANALYZE otherwise.
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
