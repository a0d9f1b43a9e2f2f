"""Tools for running txmon on one machine: the local PostgreSQL and Kafka, the synthetic payment
generator and its producer. Beside the platform's layers: nothing in them imports these."""
