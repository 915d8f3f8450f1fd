-- One transaction by hash: what an explorer does on every page view.
SELECT hash, block_number, from_address, to_address, value, fee_wei
FROM transactions
WHERE hash = '{{tx_hash}}'
