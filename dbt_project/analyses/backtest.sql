-- `txmon backtest`: what the suspicious-activity rules (macros suspicious_reasons and aml_typologies) would flag in the
-- landed history of days backtest_from..backtest_to (of backtest_region, when given), judged by the parameters of
-- var rules_override (else the recorded ones): per day, region and reason, how many transactions and accounts. A
-- query to run, not a model: it writes nothing.
with state as (

    select * from {{ ref('int_transaction_state') }}
    where event_date between '{{ var('backtest_from') }}'::date and '{{ var('backtest_to') }}'::date
    {%- if var('backtest_region') %}
      and region = '{{ var('backtest_region') }}'
    {%- endif %}

),

{{ judge('state', var('backtest_from'), var('backtest_to'), var('backtest_region')) }}

select
    judged.event_date,
    judged.region,
    flagged.flag,
    count(*) as flagged_transactions,
    count(distinct judged.account_id) as flagged_accounts
from judged
cross join unnest(judged.reasons) as flagged (flag)
group by judged.event_date, judged.region, flagged.flag
order by judged.event_date, judged.region, flagged.flag
