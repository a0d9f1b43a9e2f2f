-- The identities of one day, found without reading every identity: staging_events_unique joins a slice's events to
-- the identities of their day (an identity carries its event's time). Identities are written as events land, so
-- their physical order follows event time closely; a BRIN index stays a few pages and costs the landing nothing
-- measurable.
CREATE INDEX event_identities_event_time_brin ON staging.event_identities USING brin (event_time);
