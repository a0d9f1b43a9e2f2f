{#- The suspicious-activity threshold in USD for a region: an override, else the default. -#}
{% macro suspicious_threshold_usd(region_column) -%}
    {%- set overrides = var('suspicious_threshold_usd_by_region') -%}
    {%- set default = var('suspicious_threshold_usd') -%}
    {%- if overrides -%}
        case {{ region_column }}
        {%- for region, threshold in overrides.items() %}
            when '{{ region }}' then {{ threshold }}::numeric
        {%- endfor %}
            else {{ default }}::numeric
        end
    {%- else -%}
        {{ default }}::numeric
    {%- endif -%}
{%- endmacro %}
