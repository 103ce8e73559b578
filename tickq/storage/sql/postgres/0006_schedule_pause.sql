-- A schedule an operator paused claims no slot until it is resumed.
ALTER TABLE schedules ADD COLUMN paused boolean NOT NULL DEFAULT false;
