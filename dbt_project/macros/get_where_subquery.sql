{#-
  Data tests on partitioned models check only the slice a run rebuilt: a test's `where` may say
  __slice_event_date__ or __slice_settlement_date__, replaced here by that slice's filter (or by
  `true` on a full build). Otherwise dbt's own behaviour.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- set where = where
            | replace('__slice_event_date__', partition_filter('event_date', 'region'))
            | replace('__slice_settlement_date__', partition_filter('settlement_date', 'region')) -%}
        (select * from {{ relation }} where {{ where }}) dbt_subquery
    {%- else -%}
        {{ relation }}
    {%- endif -%}
{%- endmacro %}
