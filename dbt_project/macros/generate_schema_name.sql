{#- Models land in exactly the schema they name (staging, intermediate, marts), not public_marts. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ custom_schema_name if custom_schema_name is not none else target.schema }}
{%- endmacro %}
