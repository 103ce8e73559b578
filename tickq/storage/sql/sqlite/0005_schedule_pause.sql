-- A schedule an operator paused claims no slot until it is resumed.
ALTER TABLE schedules ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
