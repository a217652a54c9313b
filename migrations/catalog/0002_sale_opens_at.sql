-- When a concert's tickets go on sale (NULL: on sale at once). The queue copies it into the
-- concert's waiting room on the first join, so it is fixed once the concert is created.
ALTER TABLE concerts ADD COLUMN sale_opens_at TIMESTAMPTZ;
