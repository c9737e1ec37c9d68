"""The accept path: one send request → every entry's outcome, stored and handed to its lane
(`send.message_send`; request → prepare → group → rows).

Whole-batch work only (DESIGN.md, performance rules): one validation pass, one query for the
recipients, one for preferences, one Redis call for dedup/frequency/quota, one COPY for messages,
one statement for the outbox rows, and one pipelined publish after commit.
"""
