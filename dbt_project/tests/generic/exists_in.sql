{#-
  Every row's key exists in `to` for the same slice: a relationships test that probes the parent's
  slice index instead of scanning the whole parent table.
-#}
{% test exists_in(model, column_name, to, field, slice_columns) %}
with child as (

    select * from {{ model }}

)

select child.{{ column_name }}
from child
where not exists (
    select 1 from {{ to }} as parent
    where parent.{{ field }} = child.{{ column_name }}
    {%- for column in slice_columns %}
      and parent.{{ column }} = child.{{ column }}
    {%- endfor %}
)
{% endtest %}
