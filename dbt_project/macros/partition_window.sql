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

{#-
  The pre-hook of every partitioned model: empty the slice about to be rebuilt, inside the model's
  transaction. The advisory lock makes two runs of the same slice take turns (without it both
  would delete, then both insert).
-#}
{% macro delete_partition(date_column, region_column) -%}
    {%- if is_incremental() and var('partition_date') is not none -%}
        select pg_advisory_xact_lock(hashtext('{{ this }}|{{ var('partition_date') }}|{{ var('partition_region') }}'));
        delete from {{ this }}
        where {{ date_column }} = '{{ var('partition_date') }}'::date
          and {{ region_column }} = '{{ var('partition_region') }}'
    {%- elif is_incremental() -%}
        select pg_advisory_xact_lock(hashtext('{{ this }}'));
        delete from {{ this }}
    {%- else -%}
        select 1
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
