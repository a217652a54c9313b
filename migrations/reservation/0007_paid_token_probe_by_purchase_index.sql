-- "Has this token paid?" (status CONFIRMED or COMPLETED) is answered by the unique partial
-- index payments_one_purchase_per_token, whose predicate covers those states; the plain
-- index on token was a second copy of the same lookup, maintained on every status write.
DROP INDEX payments_by_token;
