"""Everything AMQP: the queues (`queues`), the wire format of accepted writes (`wire`), the
pipeline port that publishes them (`publisher`), and the consumer that drives the write side
with what it receives (`consumer`)."""
