{#-
  Data tests on partitioned models check only what a run rebuilt: a test's `where` may say
  __slice_event_date__ or __slice_settlement_date__, replaced here by that slice's filter (`true` on
  a full build). In a new_data run, __slice_event_date__ narrows further to the rows this run wrote
  (refreshed_at from the model's watermark). Otherwise dbt's own behaviour.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- set slice = partition_filter('event_date', 'region') -%}
        {%- if var('partition_date') is not none and var('slice_mode') == 'new_data' -%}
            {%- set slice = slice ~ " and refreshed_at >= (select processed_until from intermediate.slice_watermarks"
                ~ " where model = '" ~ relation.identifier ~ "' and slice_date = '" ~ var('partition_date')
                ~ "'::date and region = '" ~ var('partition_region') ~ "')" -%}
        {%- endif -%}
        {%- set where = where
            | replace('__slice_event_date__', slice)
            | replace('__slice_settlement_date__', partition_filter('settlement_date', 'region')) -%}
        (select * from {{ relation }} where {{ where }}) dbt_subquery
    {%- else -%}
        {{ relation }}
    {%- endif -%}
{%- endmacro %}
