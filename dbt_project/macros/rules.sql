{#-
  The contract's rules, each written once and used by the models and by the tests that check them.
-#}

{#- A transaction's latest event first: greatest event time, then the later lifecycle state, then the later offset. -#}
{% macro latest_first() -%}
    event_at desc, status_rank desc, kafka_offset desc
{%- endmacro %}


{#- An event later than a transaction's state by that order (the state's own event is not). -#}
{% macro later_than(event, state) -%}
    ({{ event }}.event_at, {{ event }}.status_rank, {{ event }}.kafka_offset)
    > ({{ state }}.event_at, {{ state }}.status_rank, {{ state }}.kafka_offset)
{%- endmacro %}


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


{#-
  FX rule: the rate of the currency with the latest rate_date on or before the business day (none: amount_usd null).
  A join (`usd_rate`), planned with a cache per currency and day, then amount_usd of the joined row.
-#}
{% macro join_usd_rate(alias) -%}
    left join lateral (
        select fx.usd_per_unit
        from {{ ref('fx_rates') }} as fx
        where fx.currency = {{ alias }}.currency and fx.rate_date <= {{ alias }}.event_date
        order by fx.rate_date desc
        limit 1
    ) as usd_rate on true
{%- endmacro %}




{% macro amount_usd(alias) -%}
    round({{ alias }}.amount * usd_rate.usd_per_unit, 4)
{%- endmacro %}


{#-
  The suspicious-activity reasons of a latest state (`alias` has amount_usd, region and is_fraud_flagged): the USD
  amount strictly above the region's threshold, the upstream fraud flag. Suspicious when not empty.
-#}
{% macro suspicious_reasons(alias) -%}
    array_remove(array[
        case when {{ alias }}.amount_usd > {{ suspicious_threshold_usd(alias ~ '.region') }} then 'amount_over_threshold' end,
        case when {{ alias }}.is_fraud_flagged then 'fraud_flag' end
    ], null)::text[]
{%- endmacro %}


{#-
  The AML typologies (docs/rules.md), per region and account, on the transactions' latest states:
  - structuring: an account's transactions within any window of structuring_window_hours (the group's span shorter
    than the window), each with amount_usd at least structuring_min_ratio x the region's threshold and not over it, at
    least structuring_min_transactions of them, together over the threshold: every transaction of such a group;
  - velocity: more than velocity_max_transactions of an account's transactions within any window of
    velocity_window_minutes: every transaction past the N-th of such a window (by event time, then transaction id).
  Each transaction is judged by the parameters in force at its event time (a group by those of its last transaction);
  windows cross midnight: a slice's groups reach into the days around it. Money in the evidence is decimal text.
-#}

{#- A moment as evidence shows it, whatever the session's time zone: RFC 3339 in UTC (2026-11-24T23:30:00.000000Z). -#}
{% macro utc_text(moment) -%}
    to_char({{ moment }} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
{%- endmacro %}


{#- The parameters' columns (intermediate.rule_parameters, TXMON_RULES). -#}
{% macro rule_columns() -%}
    {{ return(['structuring_min_ratio', 'structuring_min_transactions', 'structuring_window_hours',
               'velocity_max_transactions', 'velocity_window_minutes']) }}
{%- endmacro %}


{#- rows of (region, the parameters' columns) as a VALUES list, from a mapping region -> parameters. -#}
{% macro rule_values(rules) -%}
    {%- set columns = rule_columns() -%}
    (values
    {%- for region, parameters in rules.items() %}
        ('{{ region }}'::text, {{ parameters['structuring_min_ratio'] }}::numeric,
         {%- for column in columns[1:] %} {{ parameters[column] | int }}::integer{{ ',' if not loop.last }}{% endfor %})
        {{- ',' if not loop.last }}
    {%- endfor %}
    ) as given (region, {{ columns | join(', ') }})
{%- endmacro %}


{#-
  The state's pre-hook (in the merge's transaction): record TXMON_RULES (var rules) where it differs from a region's
  latest version; a region's first version takes effect from the beginning, a change from this merge.
-#}
{% macro record_rule_parameters() -%}
    {%- set rules = var('rules') -%}
    {%- if rules -%}
    {%- set columns = rule_columns() -%}
    insert into intermediate.rule_parameters (region, effective_from, {{ columns | join(', ') }})
    select
        given.region,
        case when latest.region is null then '-infinity'::timestamptz else now() end,
        {%- for c in columns %}
        given.{{ c }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ rule_values(rules) }}
    left join lateral (
        select p.* from intermediate.rule_parameters as p
        where p.region = given.region order by p.effective_from desc limit 1
    ) as latest on true
    where latest.region is null
       or ({% for c in columns %}latest.{{ c }}{{ ', ' if not loop.last }}{% endfor %})
          is distinct from ({% for c in columns %}given.{{ c }}{{ ', ' if not loop.last }}{% endfor %})
    {%- else -%}
    select 1
    {%- endif -%}
{%- endmacro %}


{#-
  The parameters by region, each version with the time it takes effect and the next one's: the recorded versions
  (intermediate.rule_parameters, created by migration 0019), or those of var rules_override (`txmon backtest`, unit
  tests), in force throughout.
-#}
{% macro rule_parameters() -%}
    {%- set given = var('rules_override') -%}
    {%- if given -%}
    select given.*, '-infinity'::timestamptz as effective_from, 'infinity'::timestamptz as effective_until
    from {{ rule_values(given) }}
    {%- else -%}
    select
        p.region,
        {%- for c in rule_columns() %}
        p.{{ c }},
        {%- endfor %}
        p.effective_from,
        coalesce(lead(p.effective_from) over (partition by p.region order by p.effective_from), 'infinity') as effective_until
    from intermediate.rule_parameters as p
    {%- endif -%}
{%- endmacro %}


{#- The parameters in force at `alias`.event_at (a join condition with rule_params). -#}
{% macro in_force(alias, parameters='rule_params') -%}
    {{ parameters }}.region = {{ alias }}.region
    and {{ alias }}.event_at >= {{ parameters }}.effective_from and {{ alias }}.event_at < {{ parameters }}.effective_until
{%- endmacro %}


{#- How many days around a slice its groups reach (the longest window of any version). -#}
{% macro rule_reach_days() -%}
    (select coalesce(ceil(greatest(max(r.structuring_window_hours) / 24.0, max(r.velocity_window_minutes) / 1440.0)), 0)::integer
     from ({{ rule_parameters() }}) as r)
{%- endmacro %}


{#-
  The CTEs the typologies' cheap tests need, after a `with`: rule_params (the versions), usd_rate_bounds (each
  currency's lowest and highest USD rate of any day: what a conversion can be at least or at most) and rule_bounds
  (by region, the loosest parameters of any version: what a transaction needs at least to be in a group).
-#}
{% macro typology_bounds() -%}
rule_params as (

    {{ rule_parameters() }}

),

usd_rate_bounds as (

    select fx.currency, min(fx.usd_per_unit) as lowest, max(fx.usd_per_unit) as highest
    from {{ ref('fx_rates') }} as fx
    group by fx.currency

),

rule_bounds as (

    select
        rule_params.region,
        min(rule_params.structuring_min_ratio) as structuring_min_ratio,
        max(rule_params.structuring_window_hours) as structuring_window_hours,
        min(rule_params.velocity_max_transactions) as velocity_max_transactions,
        max(rule_params.velocity_window_minutes) as velocity_window_minutes
    from rule_params
    group by rule_params.region

)
{%- endmacro %}


{#-
  Whether `alias` is in structuring's band at some rate of its currency (`bound`, a row of usd_rate_bounds) with
  `min_ratio`: a superset of the candidates, told without looking up the day's rate (rounding is monotonic).
-#}
{% macro may_structure(alias, min_ratio, bound='bound') -%}
    (round({{ alias }}.amount * {{ bound }}.highest, 4) >= {{ min_ratio }} * {{ suspicious_threshold_usd(alias ~ '.region') }}
     and round({{ alias }}.amount * {{ bound }}.lowest, 4) <= {{ suspicious_threshold_usd(alias ~ '.region') }})
{%- endmacro %}


{#-
  The accounts (account_id, region) of the transactions in `rows` that a typology may concern: a transaction in
  structuring's band, or one with more than the least N of its account's transactions within the longest velocity
  window either side of it (counted on the index on account, region and time, up to N + 1). A transaction whose
  account is not among them fires neither rule, nor does one of its account's that it is in a window with, so only
  these accounts' transactions are judged against their neighbours. Needs the CTEs of typology_bounds.
-#}
{% macro typology_accounts(rows) -%}
    select distinct r.account_id, r.region
    from {{ rows }} as r
    inner join rule_bounds as b on b.region = r.region
    left join usd_rate_bounds as bound on bound.currency = r.currency
    where {{ may_structure('r', 'b.structuring_min_ratio') }}
       or (
        select count(*) from (
            select 1 from {{ ref('int_transaction_state') }} as near
            where near.account_id = r.account_id
              and near.region = r.region
              and near.event_at > r.event_at - make_interval(mins => b.velocity_window_minutes)
              and near.event_at < r.event_at + make_interval(mins => b.velocity_window_minutes)
            limit b.velocity_max_transactions + 1
        ) as crowd
       ) > b.velocity_max_transactions
{%- endmacro %}


{#-
  The typologies of the transactions in CTE `rebuilt` (a slice's states, or those of a new-data build): one row per
  transaction that fired, with its reasons and evidence (the group's ids and totals, per typology). `rebuilt` lies
  within days first_day..last_day (of `region`, when given; default: the partition). Only the accounts of
  typology_accounts(rebuilt) are judged against their neighbours, or those of relation `accounts` when given (a
  superset of them). Defines the CTEs it needs, after a `with`; ends with a CTE named `typologies`.
-#}
{% macro aml_typologies(rebuilt, first_day=var('partition_date'), last_day=var('partition_date'), region=var('partition_region'), accounts=none) -%}
{{ typology_bounds() }},

rule_accounts as (

    {%- if accounts %}
    select account_id, region from {{ accounts }}
    {%- else %}
    {{ typology_accounts(rebuilt) }}
    {%- endif %}

),

-- Their rebuilt transactions: the only ones either rule may fire on.
rule_rebuilt as (

    select r.transaction_id, r.account_id, r.region, r.event_at
    from {{ rebuilt }} as r
    inner join rule_accounts on rule_accounts.account_id = r.account_id and rule_accounts.region = r.region

),

-- The states of those accounts in the days the windows reach, each with the parameters in force at its event time.
context as (

    select
        c.transaction_id,
        c.account_id,
        c.region,
        c.amount,
        c.currency,
        c.event_at,
        c.event_date,
        {%- for col in rule_columns() %}
        rule_params.{{ col }},
        {%- endfor %}
        {{ suspicious_threshold_usd('c.region') }} as threshold_usd
    from {{ ref('int_transaction_state') }} as c
    inner join rule_accounts on rule_accounts.account_id = c.account_id and rule_accounts.region = c.region
    inner join rule_params on {{ in_force('c') }}
    where true
    {%- if region is not none %}
      and c.region = '{{ region }}'
    {%- endif %}
    {%- if first_day is not none %}
      and c.event_date >= '{{ first_day }}'::date - {{ rule_reach_days() }}
      and c.event_date <= '{{ last_day }}'::date + {{ rule_reach_days() }}
    {%- endif %}

),

-- Structuring: the transactions in the band (converted only where some rate of the currency could put it there).
candidates as (

    select banded.*
    from (
        select context.*, {{ amount_usd('context') }} as amount_usd
        from context
        inner join usd_rate_bounds as bound on bound.currency = context.currency
        {{ join_usd_rate('context') }}
        where {{ may_structure('context', 'context.structuring_min_ratio') }}
    ) as banded
    where banded.amount_usd >= banded.structuring_min_ratio * banded.threshold_usd
      and banded.amount_usd <= banded.threshold_usd

),

-- Each candidate as the last transaction of a window: the candidates of its account within the window before it.
structuring_windows as (

    select
        last.transaction_id as last_id,
        last.account_id,
        last.region,
        last.event_at as last_at,
        last.structuring_window_hours,
        last.structuring_min_ratio,
        last.threshold_usd,
        count(*) as transactions,
        sum(member.amount_usd) as total_usd,
        min(member.event_at) as first_at,
        jsonb_agg(member.transaction_id order by member.event_at, member.transaction_id) as transaction_ids
    from candidates as last
    inner join candidates as member
        on member.account_id = last.account_id and member.region = last.region
        and member.event_at > last.event_at - make_interval(hours => last.structuring_window_hours)
        and (member.event_at, member.transaction_id) <= (last.event_at, last.transaction_id)
    group by
        last.transaction_id, last.account_id, last.region, last.event_at, last.structuring_window_hours,
        last.structuring_min_ratio, last.structuring_min_transactions, last.threshold_usd
    having count(*) >= last.structuring_min_transactions and sum(member.amount_usd) > last.threshold_usd

),

-- A rebuilt candidate in a window that fired: its reason, with the largest such window as evidence.
structuring as (

    select distinct on (x.transaction_id)
        x.transaction_id,
        w.*
    from rule_rebuilt as x
    inner join structuring_windows as w
        on w.account_id = x.account_id and w.region = x.region
        and x.event_at > w.last_at - make_interval(hours => w.structuring_window_hours)
        and (x.event_at, x.transaction_id) <= (w.last_at, w.last_id)
    where exists (select 1 from candidates as c where c.transaction_id = x.transaction_id)
    order by x.transaction_id, w.transactions desc, w.last_at, w.last_id

),

structuring_evidence as (

    select
        s.transaction_id,
        jsonb_build_object(
            'transaction_ids', s.transaction_ids,
            'transactions', s.transactions,
            'total_usd', s.total_usd::text,
            'threshold_usd', s.threshold_usd::text,
            'min_ratio', s.structuring_min_ratio::text,
            'window_hours', s.structuring_window_hours,
            'first_at', {{ utc_text('s.first_at') }},
            'last_at', {{ utc_text('s.last_at') }}
        ) as evidence
    from structuring as s

),

-- Velocity: the accounts with more transactions in the reach than the smallest N could allow, numbered in order.
busy as (

    select context.account_id, context.region
    from context
    group by context.account_id, context.region
    having count(*) > min(context.velocity_max_transactions)

),

sequenced as (

    select
        context.*,
        {{ amount_usd('context') }} as amount_usd,
        row_number() over (
            partition by context.region, context.account_id order by context.event_at, context.transaction_id
        ) as seq
    from context
    inner join busy on busy.account_id = context.account_id and busy.region = context.region
    {{ join_usd_rate('context') }}

),

velocity_evidence as (

    select
        x.transaction_id,
        jsonb_build_object(
            'transaction_ids', jsonb_agg(m.transaction_id order by m.seq),
            'transactions', count(*),
            'total_usd', sum(m.amount_usd)::text,
            'max_transactions', x.velocity_max_transactions,
            'window_minutes', x.velocity_window_minutes,
            'first_at', {{ utc_text('min(m.event_at)') }},
            'last_at', {{ utc_text('x.event_at') }}
        ) as evidence
    from sequenced as x
    inner join sequenced as m
        on m.account_id = x.account_id and m.region = x.region and m.seq <= x.seq
        and m.event_at > x.event_at - make_interval(mins => x.velocity_window_minutes)
    where x.transaction_id in (select r.transaction_id from rule_rebuilt as r)
    group by x.transaction_id, x.event_at, x.velocity_max_transactions, x.velocity_window_minutes
    having count(*) > x.velocity_max_transactions

),

typologies as (

    select
        coalesce(s.transaction_id, v.transaction_id) as transaction_id,
        array_remove(array[
            case when s.transaction_id is not null then 'structuring' end,
            case when v.transaction_id is not null then 'velocity' end
        ], null)::text[] as reasons,
        jsonb_strip_nulls(jsonb_build_object('structuring', s.evidence, 'velocity', v.evidence)) as evidence
    from structuring_evidence as s
    full outer join velocity_evidence as v on v.transaction_id = s.transaction_id

)
{%- endmacro %}


{#-
  Every rule applied to the states in CTE `states` (macro aml_typologies' days, region and accounts as its): CTE `judged`, the
  states with amount_usd, threshold_usd, every reason that applies (none: an empty array) and the evidence. The one
  judgement the mart, its check and `txmon backtest` share. Defines its CTEs after a `with`.
-#}
{% macro judge(states, first_day=var('partition_date'), last_day=var('partition_date'), region=var('partition_region'), accounts=none) -%}
{{ aml_typologies(states, first_day, last_day, region, accounts) }},

converted as (

    select
        {{ states }}.*,
        {{ amount_usd(states) }} as amount_usd,
        {{ suspicious_threshold_usd(states ~ '.region') }} as threshold_usd
    from {{ states }}
    {{ join_usd_rate(states) }}

),

judged as (

    select
        converted.*,
        {{ suspicious_reasons('converted') }} || coalesce(typologies.reasons, '{}') as reasons,
        typologies.evidence
    from converted
    left join typologies on converted.transaction_id = typologies.transaction_id

)
{%- endmacro %}
