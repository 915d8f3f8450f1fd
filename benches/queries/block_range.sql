-- A range of blocks, as an indexer catching up reads them.
SELECT block_number, count(*) AS tx_count, sum(fee_wei) AS fees
FROM transactions
WHERE block_number BETWEEN {{block_from}} AND {{block_to}}
GROUP BY block_number
ORDER BY block_number
