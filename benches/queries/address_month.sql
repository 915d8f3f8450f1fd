-- Every transaction of one address, sent or received, over a month.
SELECT block_timestamp, hash, from_address, to_address, value
FROM transactions
WHERE (from_address = '{{address}}' OR to_address = '{{address}}')
  AND block_timestamp >= TIMESTAMP '{{month_start}}'
  AND block_timestamp < TIMESTAMP '{{month_end}}'
ORDER BY block_timestamp
