{#-
  Data tests on partitioned models check their slice: a test's `where` may say __slice_event_date__ or
  __slice_settlement_date__, replaced here by that slice's filter (`true` on a full build). In a new_data run after a
  publication (var checked_since: the state's watermark that publication saw), __slice_event_date__ narrows to the rows
  refreshed since (the others passed every check then). Otherwise dbt's own behaviour.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- set where = where
            | replace('__slice_event_date__', partition_filter('event_date', 'region') ~ checked_rows('refreshed_at'))
            | replace('__slice_settlement_date__', partition_filter('settlement_date', 'region')) -%}
        (select * from {{ relation }} where {{ where }}) dbt_subquery
    {%- else -%}
        {{ relation }}
    {%- endif -%}
{%- endmacro %}


{#- In a new_data run after a publication: `and <column> >= checked_since` (what changed since); else nothing. -#}
{% macro checked_rows(column) -%}
    {%- if var('partition_date') is not none and var('slice_mode') == 'new_data' and var('checked_since') -%}
        {{ " and " ~ column ~ " >= '" ~ var('checked_since') ~ "'::timestamptz" }}
    {%- endif -%}
{%- endmacro %}
